"""Command-line pieces every `tetriserve bench` sub-command that serves a model shares."""

from __future__ import annotations

import argparse
from pathlib import Path

from cluster.model_factory import ensure_model


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """`--model DIR` or `--size tiny|small` (a built-in model, made on first use), and
    `--greedy`. By default a benchmark measures as users run it: the small model, and
    vLLM's benchmark client at its own default sampling (it sends no temperature, so the
    server's default of 1.0 applies)."""
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--model", type=Path, default=None, metavar="DIR", help="model directory")
    model.add_argument("--size", choices=["tiny", "small"], default="small", help="built-in model")
    parser.add_argument(
        "--greedy", action="store_true", help="send temperature 0 (default: the client's sampling)"
    )


def sampling_args(args: argparse.Namespace) -> list[str]:
    """vLLM benchmark client flags for the chosen sampling."""
    return ["--temperature", "0"] if args.greedy else []


def model_dir(args: argparse.Namespace) -> Path:
    return args.model if args.model is not None else ensure_model(args.size)
