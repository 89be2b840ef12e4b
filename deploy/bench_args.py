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
    """`--model DIR` or `--size tiny|small` (a built-in model, made on first use)."""
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--model", type=Path, default=None, metavar="DIR", help="model directory")
    model.add_argument("--size", choices=["tiny", "small"], default="tiny", help="built-in model")


def model_dir(args: argparse.Namespace) -> Path:
    return args.model if args.model is not None else ensure_model(args.size)
