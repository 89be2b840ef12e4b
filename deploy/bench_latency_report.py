"""Figures of `tetriserve bench latency`: from the benchmark client's results to a verdict.

Pure logic, no servers: each round of vLLM's benchmark client leaves one result dict
(`mean_ttft_ms`, `median_e2el_ms`, `p99_itl_ms`, ...). `summarize` takes the rounds of the
baseline (plain vLLM) and of tetriserve and gives one `Row` per figure: the median over
rounds of each system, with its min..max spread, and the ratio tetriserve / baseline of the
medians. `format_table`, `to_markdown`, `summary_dict` and `write_chart` present the rows.
"""

from __future__ import annotations

import statistics
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

METRICS = ("ttft", "tpot", "itl", "e2el")
STATS = ("mean", "median", "p99")
FIGURES = tuple(f"{stat}_{metric}_ms" for metric in METRICS for stat in STATS)
HEADLINE = "mean_e2el_ms"
TARGET_RATIO = 1.15
CHART_FIGURES = ("mean_ttft_ms", "mean_e2el_ms")

Result = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Spread:
    """One figure over several rounds: the median and the extremes."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("a spread needs at least one value")
        return cls(statistics.median(values), min(values), max(values))


@dataclass(frozen=True, slots=True)
class Row:
    """One figure of both systems; `ratio` is tetriserve's median over the baseline's."""

    figure: str
    baseline: Spread
    tetriserve: Spread

    @property
    def ratio(self) -> float:
        if self.baseline.median == 0:
            return float("inf") if self.tetriserve.median > 0 else 1.0
        return self.tetriserve.median / self.baseline.median


def check_complete(result: Result, expected: int, label: str) -> None:
    """Raises when a run did not finish every request: its latencies would mean nothing."""
    completed, failed = result.get("completed", 0), result.get("failed", 0)
    if completed != expected or failed:
        raise RuntimeError(
            f"{label}: {completed} of {expected} requests completed, {failed} failed"
        )


def summarize(baseline: Sequence[Result], tetriserve: Sequence[Result]) -> list[Row]:
    """One row per figure that every round of both systems reported, in `FIGURES` order."""
    if not baseline or not tetriserve:
        raise ValueError("each system needs at least one round")
    rounds = [*baseline, *tetriserve]
    return [
        Row(
            figure,
            Spread.of([float(result[figure]) for result in baseline]),
            Spread.of([float(result[figure]) for result in tetriserve]),
        )
        for figure in FIGURES
        if all(figure in result for result in rounds)
    ]


def headline(rows: Sequence[Row]) -> Row:
    """The row the target is set on: mean end-to-end latency."""
    for row in rows:
        if row.figure == HEADLINE:
            return row
    raise KeyError(f"no {HEADLINE} among the figures")


def verdict(rows: Sequence[Row], target: float = TARGET_RATIO) -> str:
    row = headline(rows)
    within = "within" if row.ratio <= target else "above"
    return (
        f"tetriserve mean E2EL is {row.ratio:.2f}x plain vLLM ({within} the {target:.2f}x target)"
    )


def label(figure: str) -> str:
    """`p99_ttft_ms` -> `p99 TTFT (ms)`."""
    stat, metric, _ = figure.split("_")
    return f"{stat} {metric.upper()} (ms)"


def _cell(spread: Spread) -> str:
    return f"{spread.median:.2f} [{spread.low:.2f}..{spread.high:.2f}]"


def _cells(rows: Sequence[Row]) -> list[tuple[str, str, str, str]]:
    return [
        (label(row.figure), _cell(row.baseline), _cell(row.tetriserve), f"{row.ratio:.2f}x")
        for row in rows
    ]


HEADER = ("figure", "vLLM median [min..max]", "tetriserve median [min..max]", "ratio")


def format_table(rows: Sequence[Row]) -> str:
    lines = [HEADER, *_cells(rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )


def to_markdown(rows: Sequence[Row]) -> str:
    lines = [HEADER, ("---", "---:", "---:", "---:"), *_cells(rows)]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines) + "\n"


def summary_dict(rows: Sequence[Row]) -> dict[str, Any]:
    """The rows as JSON-ready data, keyed by figure."""
    return {row.figure: {**asdict(row), "ratio": row.ratio} for row in rows}


def write_chart(rows: Sequence[Row], path: Path, title: str) -> Path:
    """A bar chart of both systems' chart figures, medians with min..max error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [row for row in rows if row.figure in CHART_FIGURES]
    positions = range(len(shown))
    fig, ax = plt.subplots(figsize=(6, 4))
    for offset, name in ((-0.2, "baseline"), (0.2, "tetriserve")):
        spreads = [getattr(row, name) for row in shown]
        errors = [[s.median - s.low for s in spreads], [s.high - s.median for s in spreads]]
        ax.bar(
            [p + offset for p in positions],
            [s.median for s in spreads],
            width=0.4,
            yerr=errors,
            capsize=4,
            label="plain vLLM" if name == "baseline" else "tetriserve",
        )
    ax.set_xticks(list(positions), [label(row.figure) for row in shown])
    ax.set_ylabel("ms")
    ax.set_title(textwrap.fill(title, 60), fontsize=9)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
