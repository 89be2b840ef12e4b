"""Figures of `tetriserve bench workloads`: from the client's per-request results to a verdict.

Pure logic, no servers. For each workload and system, vLLM's benchmark client leaves one
result dict with per-request `ttfts`, `latencies` (job completion time, JCT), `start_times`
and `errors`; `figures_from_client` turns it, with the instances' busy time, into one
`SystemFigures`. A `WorkloadResult` pairs tetriserve's figures with colocated vLLM's, and
`to_json`, `to_markdown`, `write_plots` and `verdict` present the pairs.

Cost is counted in core-seconds: each instance's busy time (`busy_seconds`: the time it has
a request in flight) times its cores, summed over instances. Performance per dollar is
`1 / (mean JCT in s * core-seconds)`: it grows when requests finish sooner and when the
work takes fewer core-seconds, so higher is better.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

NAN = float("nan")
LPHD = "LPHD"
TTFT_TARGET = 0.5
JCT_TARGET = 0.9
# Figures with a tetriserve / vLLM ratio: all but the request counts.
RATIO_FIGURES = (
    "ttft_mean_ms",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "jct_mean_ms",
    "jct_p50_ms",
    "jct_p99_ms",
    "instance_seconds",
    "core_seconds",
    "perf_per_dollar",
)
SYSTEMS = (("vllm", "vLLM"), ("tetriserve", "tetriserve"))


@dataclass(frozen=True, slots=True)
class SystemFigures:
    """One system on one workload: latencies of its successful requests, and its cost.

    `requests` counts every request sent and `failed` those that ended in an error.
    `perf_per_dollar` is `1 / (mean JCT in s * core_seconds)`, higher is better.
    """

    requests: int
    failed: int
    ttft_mean_ms: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    jct_mean_ms: float
    jct_p50_ms: float
    jct_p99_ms: float
    instance_seconds: float
    core_seconds: float
    perf_per_dollar: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


FIGURE_NAMES = tuple(field.name for field in fields(SystemFigures))


def busy_seconds(start_times: Sequence[float], latencies: Sequence[float]) -> float:
    """The length of the union of the intervals [start, start + latency]."""
    intervals = sorted(zip(start_times, latencies, strict=True))
    total, end = 0.0, -math.inf
    for start, latency in intervals:
        finish = start + latency
        if finish > end:
            total += finish - max(start, end)
            end = finish
    return total


def stats_ms(seconds: Sequence[float]) -> tuple[float, float, float]:
    """Mean, median and p99 in ms; NaN for no values."""
    if not seconds:
        return NAN, NAN, NAN
    values = np.asarray(seconds, dtype=float) * 1000.0
    p50, p99 = np.percentile(values, [50, 99])
    return float(values.mean()), float(p50), float(p99)


def perf_per_dollar(jct_mean_ms: float, core_seconds: float) -> float:
    """`1 / (mean JCT in s * core-seconds)`; NaN when either is zero or unknown."""
    cost = jct_mean_ms / 1000.0 * core_seconds
    return 1.0 / cost if cost > 0 else NAN


def figures_from_client(
    result: Mapping[str, Any], instance_seconds: float, core_seconds: float
) -> SystemFigures:
    """The figures of one client run; latencies count only requests without an error."""
    errors = list(result["errors"])
    ok = [i for i, error in enumerate(errors) if not error]
    ttft = stats_ms([float(result["ttfts"][i]) for i in ok])
    jct = stats_ms([float(result["latencies"][i]) for i in ok])
    return SystemFigures(
        len(errors),
        len(errors) - len(ok),
        *ttft,
        *jct,
        float(instance_seconds),
        float(core_seconds),
        perf_per_dollar(jct[0], core_seconds),
    )


def _ratio(value: float, baseline: float) -> float:
    if baseline == 0 or math.isnan(baseline) or math.isnan(value):
        return NAN
    return value / baseline


@dataclass(frozen=True, slots=True)
class WorkloadResult:
    """Both systems on one workload."""

    workload: str
    tetriserve: SystemFigures
    vllm: SystemFigures

    def ratio(self) -> dict[str, float]:
        """tetriserve / vLLM per figure of `RATIO_FIGURES`; NaN over a zero baseline."""
        return {
            name: _ratio(getattr(self.tetriserve, name), getattr(self.vllm, name))
            for name in RATIO_FIGURES
        }


def _json_safe(figures: Mapping[str, float]) -> dict[str, float | None]:
    """NaN and infinities become null, so the result is strict JSON."""
    return {name: value if math.isfinite(value) else None for name, value in figures.items()}


def to_json(results: Sequence[WorkloadResult]) -> list[dict[str, Any]]:
    """One entry per workload: both systems' figures and the ratios, NaN as null."""
    return [
        {
            "workload": result.workload,
            "tetriserve": _json_safe(result.tetriserve.to_dict()),
            "vllm": _json_safe(result.vllm.to_dict()),
            "ratio": _json_safe(result.ratio()),
        }
        for result in results
    ]


TABLE_FIGURES = (
    ("ttft_mean_ms", "mean TTFT (ms)"),
    ("ttft_p50_ms", "p50 TTFT (ms)"),
    ("ttft_p99_ms", "p99 TTFT (ms)"),
    ("jct_mean_ms", "mean JCT (ms)"),
    ("jct_p50_ms", "p50 JCT (ms)"),
    ("jct_p99_ms", "p99 JCT (ms)"),
    ("core_seconds", "core-s"),
    ("perf_per_dollar", "perf/$"),
)


def _number(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.4g}" if abs(value) < 1 else f"{value:.1f}"


def _times(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}x"


def _rows(result: WorkloadResult) -> list[list[str]]:
    """vLLM's row, tetriserve's row and the ratio row of one workload."""
    rows = []
    for attr, name in SYSTEMS:
        figures = getattr(result, attr)
        cells = [_number(getattr(figures, figure)) for figure, _ in TABLE_FIGURES]
        rows.append([result.workload, name, f"{figures.failed}/{figures.requests}", *cells])
    ratio = result.ratio()
    cells = [_times(ratio[figure]) for figure, _ in TABLE_FIGURES]
    rows.append([result.workload, "tetriserve / vLLM", "", *cells])
    return rows


def to_markdown(results: Sequence[WorkloadResult], thresholds_line: str) -> str:
    """The thresholds, then a table: per workload, each system's figures and the ratios."""
    header = ["workload", "system", "failed", *(label for _, label in TABLE_FIGURES)]
    align = ["---", "---", "---:", *("---:" for _ in TABLE_FIGURES)]
    lines = [header, align, *(row for result in results for row in _rows(result))]
    table = "\n".join("| " + " | ".join(line) + " |" for line in lines)
    return f"{thresholds_line}\n\n{table}\n"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grouped_bars(ax: Any, names: Sequence[str], series: Mapping[str, Sequence[float]]) -> None:
    """One group of bars per name, one bar per series."""
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        offset = (i - (len(series) - 1) / 2) * width
        ax.bar([p + offset for p in range(len(names))], values, width=width, label=label)
    ax.set_xticks(list(range(len(names))), list(names))
    ax.legend(fontsize=8)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def _latency_plot(results: Sequence[WorkloadResult], metric: str, path: Path) -> Path:
    """Mean and p99 of `metric` (ttft or jct) per workload, both systems side by side."""
    plt = _pyplot()
    names = [result.workload for result in results]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, stat in zip(axes, ("mean", "p99"), strict=True):
        figure = f"{metric}_{stat}_ms"
        series = {
            label: [getattr(getattr(result, attr), figure) for result in results]
            for attr, label in SYSTEMS
        }
        _grouped_bars(ax, names, series)
        ax.set_title(f"{stat} {metric.upper()}")
        ax.set_ylabel("ms")
    return _save(fig, path)


RATIO_PLOT = (
    ("ttft_mean_ms", "mean TTFT"),
    ("jct_mean_ms", "mean JCT"),
    ("perf_per_dollar", "perf/$"),
)


def _ratio_plot(results: Sequence[WorkloadResult], path: Path) -> Path:
    """tetriserve / vLLM of mean TTFT, mean JCT and perf/$ per workload, with a line at 1."""
    plt = _pyplot()
    ratios = [result.ratio() for result in results]
    series = {label: [ratio[figure] for ratio in ratios] for figure, label in RATIO_PLOT}
    fig, ax = plt.subplots(figsize=(8, 4))
    _grouped_bars(ax, [result.workload for result in results], series)
    ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
    ax.set_ylabel("tetriserve / vLLM")
    title = "tetriserve / colocated vLLM (below 1 is better for latency, above 1 for perf/$)"
    ax.set_title(textwrap.fill(title, 60), fontsize=9)
    return _save(fig, path)


def write_plots(results: Sequence[WorkloadResult], out_dir: Path) -> list[Path]:
    """ttft.png, jct.png and ratio.png in `out_dir`."""
    out_dir = Path(out_dir)
    return [
        _latency_plot(results, "ttft", out_dir / "ttft.png"),
        _latency_plot(results, "jct", out_dir / "jct.png"),
        _ratio_plot(results, out_dir / "ratio.png"),
    ]


def _target_note(ratio: Mapping[str, float], ttft_target: float, jct_target: float) -> str:
    ttft_ok = ratio["ttft_mean_ms"] <= ttft_target
    jct_ok = ratio["jct_mean_ms"] <= jct_target
    missed = [name for name, ok in (("TTFT", ttft_ok), ("JCT", jct_ok)) if not ok]
    outcome = "met" if not missed else "missed (" + ", ".join(missed) + ")"
    return f"; targets mean TTFT <= {ttft_target:.2f}x, mean JCT <= {jct_target:.2f}x: {outcome}"


def verdict(
    results: Sequence[WorkloadResult],
    ttft_target: float = TTFT_TARGET,
    jct_target: float = JCT_TARGET,
) -> str:
    """One line per workload with its ratios; LPHD's line says whether the targets are met."""
    lines = []
    for result in results:
        ratio = result.ratio()
        line = (
            f"{result.workload}: tetriserve / vLLM mean TTFT {_times(ratio['ttft_mean_ms'])}, "
            f"mean JCT {_times(ratio['jct_mean_ms'])}, "
            f"perf/$ {_times(ratio['perf_per_dollar'])}"
        )
        if result.workload == LPHD:
            line += _target_note(ratio, ttft_target, jct_target)
        lines.append(line)
    return "\n".join(lines)
