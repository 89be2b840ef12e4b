"""`tetriserve bench hw`: run the hardware models and set their figures beside the hardware's.

Every figure is computed by driving the models (Clio board, Storm dataplane, SuperNIC); the
table shows model value, the value measured on the hardware, and their ratio. `--json PATH`
also writes the figures as a list of {"name", "model", "paper", "unit", "ratio"} objects.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fpga_models.figures import Figure, hardware_figures


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "hw",
        help="calibration figures of the hardware models (Clio, Storm, SuperNIC)",
        description="Run the Clio memory-board, Storm dataplane and SuperNIC models and print "
        "each figure next to the value measured on the hardware, with their ratio.",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write JSON")
    parser.add_argument("--seed", type=int, default=0, help="seed of the models' jitter")
    parser.set_defaults(func=run)


def format_table(figures: list[Figure]) -> str:
    width = max(len(figure.name) for figure in figures)
    lines = [f"{'name':<{width}}  {'model':>10}  {'paper':>10}  {'unit':<4}  {'ratio':>6}"]
    lines += [
        f"{figure.name:<{width}}  {figure.model:>10.3f}  {figure.paper:>10.3f}  "
        f"{figure.unit:<4}  {figure.ratio:>6.3f}"
        for figure in figures
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    figures = hardware_figures(seed=getattr(args, "seed", 0))
    print(format_table(figures))
    print(f"{len(figures)} figures in {time.perf_counter() - started:.1f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([figure.as_dict() for figure in figures], indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
