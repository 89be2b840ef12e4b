"""The figures of `tetriserve bench workloads`, from hand-built client results; no server runs."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from deploy import bench_workloads_report as report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def client_result() -> dict:
    """Four good requests and one failed one whose times must not count."""
    return {
        "ttfts": [0.4, 0.1, 0.3, 0.2, 9.0],
        "latencies": [4.0, 1.0, 3.0, 2.0, 90.0],
        "start_times": [0.0, 0.5, 1.0, 1.5, 2.0],
        "output_lens": [10, 10, 10, 10, 0],
        "errors": ["", "", "", "", "timed out"],
        "completed": 4,
        "failed": 1,
        "duration": 6.0,
    }


def figures(scale: float = 1.0, core_seconds: float = 8.0) -> report.SystemFigures:
    return report.SystemFigures(
        requests=10,
        failed=0,
        ttft_mean_ms=100.0 * scale,
        ttft_p50_ms=90.0 * scale,
        ttft_p99_ms=300.0 * scale,
        jct_mean_ms=2000.0 * scale,
        jct_p50_ms=1800.0 * scale,
        jct_p99_ms=5000.0 * scale,
        instance_seconds=core_seconds / 2,
        core_seconds=core_seconds,
        perf_per_dollar=report.perf_per_dollar(2000.0 * scale, core_seconds),
    )


def results() -> list[report.WorkloadResult]:
    return [
        report.WorkloadResult(name, figures(scale), figures())
        for name, scale in (("LPLD", 1.2), ("LPHD", 0.4), ("Mixed", 0.8))
    ]


def test_busy_seconds_is_the_union_of_the_intervals() -> None:
    assert report.busy_seconds([0.0, 1.0, 5.0], [2.0, 2.0, 1.0]) == pytest.approx(4.0)
    assert report.busy_seconds([2.0, 0.0], [1.0, 1.0]) == pytest.approx(2.0)
    assert report.busy_seconds([0.0, 2.0], [10.0, 1.0]) == pytest.approx(10.0)
    assert report.busy_seconds([0.0, 1.0], [1.0, 1.0]) == pytest.approx(2.0)
    assert report.busy_seconds([], []) == 0.0


def test_figures_count_only_successful_requests() -> None:
    got = report.figures_from_client(client_result(), instance_seconds=6.0, core_seconds=8.0)
    assert (got.requests, got.failed) == (5, 1)
    assert got.ttft_mean_ms == pytest.approx(250.0)
    assert got.ttft_p50_ms == pytest.approx(250.0)
    assert got.ttft_p99_ms == pytest.approx(397.0)  # 300 + 0.97 * (400 - 300)
    assert got.jct_mean_ms == pytest.approx(2500.0)
    assert got.jct_p50_ms == pytest.approx(2500.0)
    assert got.jct_p99_ms == pytest.approx(3970.0)
    assert (got.instance_seconds, got.core_seconds) == (6.0, 8.0)
    assert got.perf_per_dollar == pytest.approx(1.0 / (2.5 * 8.0))


def test_all_failed_leaves_the_latencies_unknown() -> None:
    result = client_result() | {"errors": ["boom"] * 5}
    got = report.figures_from_client(result, instance_seconds=1.0, core_seconds=2.0)
    assert got.failed == 5
    assert math.isnan(got.jct_mean_ms) and math.isnan(got.ttft_p99_ms)
    assert math.isnan(got.perf_per_dollar)


def test_ratio_is_tetriserve_over_vllm_and_nan_over_zero() -> None:
    base = figures()
    result = report.WorkloadResult("LPHD", replace(figures(0.5), core_seconds=0.0), base)
    ratio = result.ratio()
    assert set(ratio) == set(report.RATIO_FIGURES)
    assert ratio["ttft_mean_ms"] == pytest.approx(0.5)
    assert ratio["jct_p99_ms"] == pytest.approx(0.5)
    assert ratio["core_seconds"] == 0.0
    zero = report.WorkloadResult("LPHD", base, replace(base, core_seconds=0.0))
    assert math.isnan(zero.ratio()["core_seconds"])


def test_perf_per_dollar_prefers_faster_and_cheaper() -> None:
    assert report.perf_per_dollar(1000.0, 4.0) == pytest.approx(0.25)
    assert report.perf_per_dollar(500.0, 4.0) > report.perf_per_dollar(1000.0, 4.0)
    assert report.perf_per_dollar(1000.0, 2.0) > report.perf_per_dollar(1000.0, 4.0)
    assert math.isnan(report.perf_per_dollar(1000.0, 0.0))


def test_json_has_both_systems_and_the_ratios() -> None:
    data = report.to_json(results())
    assert [entry["workload"] for entry in data] == ["LPLD", "LPHD", "Mixed"]
    for entry in data:
        assert set(entry) == {"workload", "tetriserve", "vllm", "ratio"}
        assert list(entry["tetriserve"]) == list(report.FIGURE_NAMES)
        assert list(entry["vllm"]) == list(report.FIGURE_NAMES)
        assert list(entry["ratio"]) == list(report.RATIO_FIGURES)
    assert data[1]["ratio"]["ttft_mean_ms"] == pytest.approx(0.4)
    assert data[1]["vllm"]["requests"] == 10
    json.dumps(data, allow_nan=False)


def test_json_writes_unknown_figures_as_null() -> None:
    failed = report.figures_from_client(
        client_result() | {"errors": ["x"] * 5}, instance_seconds=1.0, core_seconds=1.0
    )
    data = report.to_json([report.WorkloadResult("HPHD", failed, figures())])
    assert data[0]["tetriserve"]["jct_mean_ms"] is None
    assert data[0]["ratio"]["jct_mean_ms"] is None
    json.dumps(data, allow_nan=False)


def test_markdown_has_every_workload_and_the_thresholds() -> None:
    text = report.to_markdown(results(), "heavy prefill: prompt > 64 tokens")
    assert text.startswith("heavy prefill: prompt > 64 tokens\n")
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 3 * 3
    for name in ("LPLD", "LPHD", "Mixed"):
        assert sum(line.startswith(f"| {name} |") for line in table) == 3
    assert "mean TTFT (ms)" in table[0] and "perf/$" in table[0] and "core-s" in table[0]
    assert "| LPHD | tetriserve / vLLM |  | 0.40x |" in text


def test_plots_are_written_as_png(tmp_path: Path) -> None:
    paths = report.write_plots(results(), tmp_path / "plots")
    assert [path.name for path in paths] == ["ttft.png", "jct.png", "ratio.png"]
    for path in paths:
        assert path.parent == tmp_path / "plots"
        assert path.read_bytes().startswith(PNG_MAGIC)
        assert path.stat().st_size > 1000


def test_verdict_checks_the_targets_on_lphd_only() -> None:
    lines = report.verdict(results()).splitlines()
    assert len(lines) == 3
    lphd = next(line for line in lines if line.startswith("LPHD:"))
    assert "0.40x" in lphd and lphd.endswith("met")
    assert all("target" not in line for line in lines if not line.startswith("LPHD:"))
    slow = [report.WorkloadResult("LPHD", replace(figures(0.4), jct_mean_ms=1900.0), figures())]
    assert report.verdict(slow).endswith("missed (JCT)")
    assert report.verdict(slow, jct_target=0.96).endswith("met")
