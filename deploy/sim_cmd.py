"""`tetriserve sim`: the simulator's paper replays, from the command line.

`tetriserve sim tetriinfer` runs `cluster.sim.replay.tetriinfer_rows` (no Ray, no vLLM):
each TetriInfer workload on a simulated tetriserve cluster and on colocated instances, on
one cost model from `cluster/sim/costs/` (or a JSON file), with a progress bar over the
runs. It prints every row, tetriserve / baseline beside the paper's figure, with ours /
paper and whether the direction agrees with the paper's; `--json PATH` writes the rows,
`--out DIR` writes table.md and ratios.png.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cluster.sim.cost_model import CostModel, builtin_cost_models, load_cost_model
from cluster.sim.replay import tetriinfer_rows
from cluster.sim.tetriinfer_paper import PAPER_DIRECTIONS
from cluster.workload_mix import WORKLOADS
from deploy.bench_args import positive, workloads_arg

DEFAULT_COST_MODEL = "opt13b_tetriinfer"
NO_FIGURE = "—"
SYSTEMS_PER_WORKLOAD = 2  # tetriserve and the colocated baseline
Row = dict[str, Any]


def add_cost_model_arg(parser: argparse.ArgumentParser, default: str = DEFAULT_COST_MODEL) -> None:
    """`--cost-model NAME|PATH`, loaded: every `sim` command that runs the simulator takes it."""
    parser.add_argument(
        "--cost-model",
        type=cost_model_arg,
        default=default,
        metavar="NAME|PATH",
        help=f"a cost model in cluster/sim/costs/ ({', '.join(builtin_cost_models())}) or a "
        f"JSON file (default: {default})",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tetriinfer",
        help="replay TetriInfer's five workloads; ratios beside the paper's",
        description="Simulate each TetriInfer workload on a tetriserve cluster and on "
        "colocated instances (the paper's vLLM baseline) from the same requests; print "
        "tetriserve / baseline of mean TTFT, mean JCT, resource and perf/$ beside the "
        "paper's figures.",
    )
    add_cost_model_arg(parser)
    parser.add_argument(
        "--workloads",
        type=workloads_arg,
        default=list(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument(
        "--requests", type=positive, default=128, help="requests per workload (default: 128)"
    )
    parser.add_argument("--seed", type=int, default=0, help="of the requests (default: 0)")
    parser.add_argument(
        "--rate",
        type=positive_rate,
        default=None,
        metavar="R",
        help="Poisson arrivals per second (default: every request arrives at once)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="the rows")
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="writes table.md and ratios.png"
    )
    parser.set_defaults(func=run_tetriinfer)


def cost_model_arg(text: str) -> CostModel:
    try:
        return load_cost_model(text)
    except FileNotFoundError:
        raise argparse.ArgumentTypeError(
            f"no cost model {text!r}: not a file, nor one of {', '.join(builtin_cost_models())}"
        ) from None
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read cost model {text!r}: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise argparse.ArgumentTypeError(f"cost model {text!r} is not valid: {exc!r}") from None


def positive_rate(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive rate per second, got {text}")
    return value


class RunBar:
    """A progress bar over the (workload, system) runs; `tetriinfer_rows` calls it as each
    run starts, so a call finishes the run before it."""

    def __init__(self, runs: int) -> None:
        self.bar = tqdm(total=runs, unit="run")
        self.started = 0

    def __call__(self, workload: str, system: str) -> None:
        if self.started:
            self.bar.update(1)
        self.started += 1
        self.bar.set_description(f"{workload} {system}")

    def close(self) -> None:
        self.bar.update(self.bar.total - self.bar.n)
        self.bar.close()


def run_tetriinfer(args: argparse.Namespace) -> int:
    bar = RunBar(len(args.workloads) * SYSTEMS_PER_WORKLOAD)
    try:
        rows = tetriinfer_rows(
            args.cost_model,
            args.workloads,
            args.requests,
            args.seed,
            rate_per_s=math.inf if args.rate is None else args.rate,
            progress=bar,
        )
    except ValueError as error:  # the workloads do not fit the cost model's engine
        print(f"sim tetriinfer: {error}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    table = to_markdown(rows, setting_line(args))
    print(table)
    if args.json is not None:
        write_json(rows, args.json)
    if args.out is not None:
        write_out(rows, table, args.out)
    return 0


def setting_line(args: argparse.Namespace) -> str:
    arrivals = "all at once" if args.rate is None else f"Poisson at {args.rate:g}/s"
    return (
        f"cost model {args.cost_model.name}; {args.requests} requests per workload, "
        f"seed {args.seed}, arriving {arrivals}; ours and paper: tetriserve / colocated"
    )


def json_rows(rows: Sequence[Row]) -> list[Row]:
    """The rows as `{"name", "ours", "paper", "ratio"}`, null where a figure is unknown."""
    return [{key: _known(row[key]) for key in ("name", "ours", "paper", "ratio")} for row in rows]


def _known(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def write_json(rows: Sequence[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_rows(rows), indent=2) + "\n")


def direction_agrees(row: Row) -> bool | None:
    """Whether ours falls on the paper's side of 1: by its figure, else by its stated
    direction; None where the paper says neither or ours is unknown."""
    ours = _known(row["ours"])
    workload, metric = str(row["name"]).split(" ", 1)
    direction = PAPER_DIRECTIONS.get((workload, metric))
    if row["paper"] is not None:
        direction = "<1" if row["paper"] < 1 else ">1"
    if ours is None or direction is None:
        return None
    return ours < 1 if direction == "<1" else ours > 1


def _figure(value: Any) -> str:
    value = _known(value)
    return NO_FIGURE if value is None else f"{value:.3f}"


def _agreement(row: Row) -> str:
    agrees = direction_agrees(row)
    return NO_FIGURE if agrees is None else ("yes" if agrees else "no")


def to_markdown(rows: Sequence[Row], setting: str) -> str:
    header = ("name", "ours", "paper", "ours/paper", "direction agrees")
    lines = [header, ("---", "---:", "---:", "---:", "---")]
    for row in rows:
        figures = (_figure(row["ours"]), _figure(row["paper"]), _figure(row["ratio"]))
        lines.append((str(row["name"]), *figures, _agreement(row)))
    table = "\n".join("| " + " | ".join(line) + " |" for line in lines)
    return f"{setting}\n\n{table}\n"


def write_out(rows: Sequence[Row], table: str, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = out_dir / "table.md"
    markdown.write_text(table)
    return [markdown, plot_ratios(rows, out_dir / "ratios.png")]


def plot_ratios(rows: Sequence[Row], path: Path) -> Path:
    """Ours beside the paper's ratio for every row with a paper figure, on a log scale,
    with a line at 1 (below: tetriserve lower than the baseline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [row for row in rows if row["paper"] is not None and _known(row["ours"]) is not None]
    names = [str(row["name"]) for row in shown]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(names)), 4.5))
    width = 0.4
    positions = range(len(names))
    ax.bar([p - width / 2 for p in positions], [row["ours"] for row in shown], width, label="ours")
    ax.bar(
        [p + width / 2 for p in positions], [row["paper"] for row in shown], width, label="paper"
    )
    ax.set_xticks(list(positions), names, rotation=60, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
    ax.set_ylabel("tetriserve / colocated")
    ax.set_title("TetriInfer replay: ours against the paper", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
