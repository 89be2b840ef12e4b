"""The figures of `tetriserve bench lora` (deploy/bench_lora.py): per system, from vLLM's
benchmark client's detailed result and the engines' cold-start log, then the table, the
JSON and the plots.

Time per output token (TPOT) of one request is (latency - TTFT) / (output tokens - 1); a
request meets the SLO when it succeeded and its TPOT is at most the SLO's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.bench_workloads_report import stats_ms

NAN = float("nan")
# The figures whose tetriserve / vLLM ratio is reported.
RATIO_FIGURES = ("mean_ttft_ms", "mean_tpot_ms", "slo_attainment", "cold_starts")
# make-model's adapter names end in -rRANK; an engine's key adds @VERSION.
_RANK_IN_NAME = re.compile(r"-r(\d+)(?:@\d+)?$")


def request_tpots_s(result: Mapping[str, Any]) -> list[float | None]:
    """Each request's TPOT in seconds; None for a failed request or a single token."""
    tpots: list[float | None] = []
    for i, error in enumerate(result["errors"]):
        tokens = int(result["output_lens"][i])
        if error or tokens < 2:
            tpots.append(None)
            continue
        tpots.append((float(result["latencies"][i]) - float(result["ttfts"][i])) / (tokens - 1))
    return tpots


def mean_tpot_ms(result: Mapping[str, Any]) -> float:
    values = [t for t in request_tpots_s(result) if t is not None]
    return float(np.mean(values)) * 1000.0 if values else NAN


@dataclass(frozen=True, slots=True)
class LoraFigures:
    """One system's LoRA run."""

    requests: int
    failed: int
    mean_ttft_ms: float
    p99_ttft_ms: float
    mean_tpot_ms: float
    p99_tpot_ms: float
    slo_attainment: float
    cold_starts: int
    cold_start_seconds: float
    no_lora_tpot_ms: float


def figures(
    result: Mapping[str, Any],
    slo_tpot_ms: float,
    loads: Sequence[Mapping[str, Any]],
    no_lora_tpot_ms: float,
) -> LoraFigures:
    errors = list(result["errors"])
    ok = [i for i, error in enumerate(errors) if not error]
    mean_ttft, _, p99_ttft = stats_ms([float(result["ttfts"][i]) for i in ok])
    tpots = request_tpots_s(result)
    measured = [t for t in tpots if t is not None]
    mean_tpot, _, p99_tpot = stats_ms(measured)
    met = sum(1 for t in tpots if t is not None and t * 1000.0 <= slo_tpot_ms)
    return LoraFigures(
        requests=len(errors),
        failed=len(errors) - len(ok),
        mean_ttft_ms=mean_ttft,
        p99_ttft_ms=p99_ttft,
        mean_tpot_ms=mean_tpot,
        p99_tpot_ms=p99_tpot,
        slo_attainment=met / len(errors) if errors else NAN,
        cold_starts=len(loads),
        cold_start_seconds=float(sum(load["seconds"] for load in loads)),
        no_lora_tpot_ms=no_lora_tpot_ms,
    )


def cold_starts_by_rank(loads: Sequence[Mapping[str, Any]]) -> dict[int, tuple[int, float]]:
    """Rank → (loads, mean milliseconds per load), for adapters named by make-model."""
    by_rank: dict[int, list[float]] = {}
    for load in loads:
        match = _RANK_IN_NAME.search(load["adapter"])
        if match:
            by_rank.setdefault(int(match.group(1)), []).append(float(load["seconds"]))
    return {
        rank: (len(seconds), 1000.0 * sum(seconds) / len(seconds))
        for rank, seconds in sorted(by_rank.items())
    }


def cold_start_table(loads: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Per system and rank: cold starts and their mean milliseconds, as markdown."""
    lines = ["| system | rank | cold starts | mean ms per load |", "|---|---:|---:|---:|"]
    for system, system_loads in loads.items():
        for rank, (count, mean_ms) in cold_starts_by_rank(system_loads).items():
            lines.append(f"| {system} | {rank} | {count} | {mean_ms:.1f} |")
    return "\n".join(lines) + "\n"


def ratios(ours: LoraFigures, theirs: LoraFigures) -> dict[str, float]:
    """tetriserve / vLLM per figure of RATIO_FIGURES; NaN over a zero baseline."""
    out = {}
    for name in RATIO_FIGURES:
        value, base = float(getattr(ours, name)), float(getattr(theirs, name))
        out[name] = value / base if base and not math.isnan(base) else NAN
    return out


def to_json(ours: LoraFigures, theirs: LoraFigures) -> dict[str, Any]:
    """`{"tetriserve": {...}, "vllm": {...}, "ratio": {...}}`; NaN written as null."""

    def clean(values: Mapping[str, Any]) -> dict[str, Any]:
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}

    return {
        "tetriserve": clean(asdict(ours)),
        "vllm": clean(asdict(theirs)),
        "ratio": clean(ratios(ours, theirs)),
    }


_ROWS = (
    ("requests (failed)", lambda f: f"{f.requests} ({f.failed})"),
    ("mean TTFT ms", lambda f: f"{f.mean_ttft_ms:.1f}"),
    ("p99 TTFT ms", lambda f: f"{f.p99_ttft_ms:.1f}"),
    ("mean TPOT ms", lambda f: f"{f.mean_tpot_ms:.2f}"),
    ("p99 TPOT ms", lambda f: f"{f.p99_tpot_ms:.2f}"),
    ("no-LoRA mean TPOT ms", lambda f: f"{f.no_lora_tpot_ms:.2f}"),
    ("SLO attainment", lambda f: f"{f.slo_attainment:.1%}"),
    ("cold starts (s)", lambda f: f"{f.cold_starts} ({f.cold_start_seconds:.2f})"),
)


def to_markdown(ours: LoraFigures, theirs: LoraFigures, slo_tpot_ms: float) -> str:
    ratio = ratios(ours, theirs)
    ratio_cells = {
        "mean TTFT ms": ratio["mean_ttft_ms"],
        "mean TPOT ms": ratio["mean_tpot_ms"],
        "SLO attainment": ratio["slo_attainment"],
        "cold starts (s)": ratio["cold_starts"],
    }
    lines = [
        f"SLO: TPOT <= {slo_tpot_ms:.2f} ms",
        "",
        "| figure | tetriserve | vLLM | tetriserve / vLLM |",
        "|---|---:|---:|---:|",
    ]
    for label, cell in _ROWS:
        value = ratio_cells.get(label)
        shown = "" if value is None or math.isnan(value) else f"{value:.2f}x"
        lines.append(f"| {label} | {cell(ours)} | {cell(theirs)} | {shown} |")
    return "\n".join(lines) + "\n"


def write_plot(results: Mapping[str, Mapping[str, Any]], slo_tpot_ms: float, out: Path) -> Path:
    """TTFT and TPOT CDFs of each system's LoRA run, the SLO marked, to `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (ttft_axes, tpot_axes) = plt.subplots(1, 2, figsize=(11, 4))
    for system, result in results.items():
        pairs = zip(result["ttfts"], result["errors"], strict=True)
        ttfts = sorted(float(ttft) * 1000.0 for ttft, error in pairs if not error)
        tpots = sorted(t * 1000.0 for t in request_tpots_s(result) if t is not None)
        for axes, values in ((ttft_axes, ttfts), (tpot_axes, tpots)):
            if values:
                axes.plot(values, np.linspace(0, 1, len(values)), label=system)
    tpot_axes.axvline(slo_tpot_ms, color="grey", linestyle="--", label="SLO")
    ttft_axes.set(xlabel="TTFT (ms)", ylabel="share of requests", title="Time to first token")
    tpot_axes.set(xlabel="TPOT (ms)", title="Time per output token")
    for axes in (ttft_axes, tpot_axes):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out
