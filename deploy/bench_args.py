"""Command-line pieces the `tetriserve bench` and `tetriserve sim` sub-commands share."""

from __future__ import annotations

import argparse
from pathlib import Path

from cluster.model_factory import ensure_model
from cluster.workload_mix import WORKLOADS


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def add_model_args(parser: argparse.ArgumentParser, model_dirs: bool = True) -> None:
    """`--model DIR` (unless not `model_dirs`) or `--size tiny|small` (a built-in model,
    made on first use), and `--greedy`. By default a benchmark measures as users run it:
    the small model, and vLLM's benchmark client at its own default sampling (it sends no
    temperature, so the server's default of 1.0 applies)."""
    model = parser.add_mutually_exclusive_group()
    if model_dirs:
        model.add_argument("--model", type=Path, default=None, metavar="DIR", help="model dir")
    model.add_argument("--size", choices=["tiny", "small"], default="small", help="built-in model")
    parser.add_argument(
        "--greedy", action="store_true", help="send temperature 0 (default: the client's sampling)"
    )


def sampling_args(args: argparse.Namespace) -> list[str]:
    """vLLM benchmark client flags for the chosen sampling."""
    return ["--temperature", "0"] if args.greedy else []


def model_dir(args: argparse.Namespace) -> Path:
    return args.model if args.model is not None else ensure_model(args.size)


def workloads_arg(text: str) -> list[str]:
    """`--workloads`: a comma-separated subset of the five workloads, each once."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown workloads {unknown or [text]}; choose from {','.join(WORKLOADS)}"
        )
    return list(dict.fromkeys(names))
