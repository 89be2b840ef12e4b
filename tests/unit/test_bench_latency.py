"""The summary of `tetriserve bench latency`: medians, spreads and ratios from result dicts.

Every result here is a fake in the shape of vLLM's benchmark client output; no server runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from deploy import bench_latency_report as report
from deploy.cli import build_parser


def fake_result(scale: float = 1.0, **overrides: float) -> dict:
    """A fake client result: every figure is `scale` times a fixed base value."""
    base = {"ttft": 20.0, "tpot": 5.0, "itl": 5.0, "e2el": 180.0}
    result: dict = {"completed": 10, "failed": 0}
    for metric, value in base.items():
        for offset, stat in enumerate(report.STATS):
            result[f"{stat}_{metric}_ms"] = scale * (value + offset)
    return result | overrides


def test_spread_is_median_and_extremes() -> None:
    assert report.Spread.of([3.0, 1.0, 2.0]) == report.Spread(2.0, 1.0, 3.0)
    assert report.Spread.of([4.0, 1.0]) == report.Spread(2.5, 1.0, 4.0)
    with pytest.raises(ValueError):
        report.Spread.of([])


def test_summarize_takes_medians_over_rounds_and_their_ratio() -> None:
    fake_baseline = [fake_result(1.0), fake_result(3.0), fake_result(2.0)]
    fake_tetriserve = [fake_result(2.2), fake_result(2.4)]
    rows = {row.figure: row for row in report.summarize(fake_baseline, fake_tetriserve)}
    assert list(rows) == list(report.FIGURES)
    e2el = rows["mean_e2el_ms"]
    assert e2el.baseline == report.Spread(360.0, 180.0, 540.0)
    assert e2el.tetriserve.median == pytest.approx(2.3 * 180.0)
    assert e2el.tetriserve.low == pytest.approx(2.2 * 180.0)
    assert e2el.ratio == pytest.approx(2.3 / 2.0)
    assert rows["p99_ttft_ms"].baseline.median == 2.0 * 22.0


def test_figures_missing_from_any_round_are_left_out() -> None:
    fake_partial = fake_result()
    del fake_partial["p99_itl_ms"]
    rows = report.summarize([fake_result(), fake_partial], [fake_result()])
    figures = [row.figure for row in rows]
    assert "p99_itl_ms" not in figures
    assert "mean_itl_ms" in figures


def test_each_system_needs_a_round() -> None:
    with pytest.raises(ValueError):
        report.summarize([], [fake_result()])


def test_ratio_with_zero_baseline() -> None:
    zero, one = report.Spread(0.0, 0.0, 0.0), report.Spread(1.0, 1.0, 1.0)
    assert math.isinf(report.Row("mean_ttft_ms", zero, one).ratio)
    assert report.Row("mean_ttft_ms", zero, zero).ratio == 1.0


def test_incomplete_run_is_refused() -> None:
    report.check_complete(fake_result(), 10, "fake")
    with pytest.raises(RuntimeError, match="9 of 10"):
        report.check_complete(fake_result(completed=9, failed=1), 10, "fake")


def test_verdict_compares_mean_e2el_with_target() -> None:
    within = report.summarize([fake_result(1.0)], [fake_result(1.1)])
    above = report.summarize([fake_result(1.0)], [fake_result(1.5)])
    assert "1.10x" in report.verdict(within) and "within" in report.verdict(within)
    assert "1.50x" in report.verdict(above) and "above" in report.verdict(above)


def test_table_and_markdown_show_spread_and_ratio() -> None:
    rows = report.summarize([fake_result(1.0), fake_result(2.0)], [fake_result(3.0)])
    table = report.format_table(rows)
    assert "mean E2EL (ms)" in table
    assert "270.00 [180.00..360.00]" in table
    assert "2.00x" in table
    markdown = report.to_markdown(rows).splitlines()
    assert markdown[0].startswith("| figure |")
    assert len(markdown) == 2 + len(rows)


def test_summary_dict_is_json_ready() -> None:
    rows = report.summarize([fake_result(1.0)], [fake_result(1.2)])
    summary = json.loads(json.dumps(report.summary_dict(rows)))
    assert summary["mean_ttft_ms"]["baseline"]["median"] == 20.0
    assert summary["mean_ttft_ms"]["ratio"] == pytest.approx(1.2)


def test_chart_is_written(tmp_path: Path) -> None:
    rows = report.summarize([fake_result(1.0)], [fake_result(1.2)])
    path = report.write_chart(rows, tmp_path / "chart.png", "fake")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_has_bench_latency() -> None:
    args = build_parser().parse_args(["bench", "latency", "--size", "tiny", "--rounds", "3"])
    assert (args.rounds, args.num_prompts, args.input_len, args.output_len) == (3, 20, 128, 32)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "latency", "--rounds", "0"])
