"""The LoRA benchmark's figures, worked by hand from a small client result: TPOT per
request, SLO attainment counting failures as misses, cold starts, ratios and the JSON."""

from __future__ import annotations

import json
import math

import pytest

from deploy import bench_lora_report as report

# Three requests: 11 tokens in 1.1 s after a 0.1 s TTFT (TPOT (1.1 - 0.1) / 10 = 100 ms),
# 5 tokens in 0.4 s after 0.2 s (TPOT (0.4 - 0.2) / 4 = 50 ms), and one that failed.
RESULT = {
    "errors": ["", "", "timed out"],
    "ttfts": [0.1, 0.2, 0.0],
    "latencies": [1.1, 0.4, 0.0],
    "output_lens": [11, 5, 0],
}
LOADS = [{"adapter": "a@1", "seconds": 0.25}, {"adapter": "b@2", "seconds": 0.5}]


def test_tpot_per_request_leaves_out_failures() -> None:
    tpots = report.request_tpots_s(RESULT)
    assert tpots[0] == pytest.approx(0.1)
    assert tpots[1] == pytest.approx(0.05)
    assert tpots[2] is None
    assert report.mean_tpot_ms(RESULT) == pytest.approx(75.0)


def test_slo_attainment_counts_a_failed_request_as_a_miss() -> None:
    figures = report.figures(RESULT, slo_tpot_ms=60.0, loads=LOADS, no_lora_tpot_ms=40.0)
    assert (figures.requests, figures.failed) == (3, 1)
    assert figures.slo_attainment == pytest.approx(1 / 3)  # only the 50 ms request meets it
    assert figures.mean_ttft_ms == pytest.approx(150.0)
    assert (figures.cold_starts, figures.cold_start_seconds) == (2, pytest.approx(0.75))
    assert report.figures(RESULT, 100.0, [], 40.0).slo_attainment == pytest.approx(2 / 3)


def test_ratios_and_json_keys() -> None:
    ours = report.figures(RESULT, 60.0, LOADS, 40.0)
    theirs = report.figures(RESULT, 60.0, LOADS[:1], 40.0)
    payload = report.to_json(ours, theirs)
    assert set(payload) == {"tetriserve", "vllm", "ratio"}
    assert set(report.RATIO_FIGURES) <= set(payload["tetriserve"])
    assert payload["ratio"]["cold_starts"] == pytest.approx(2.0)
    assert payload["ratio"]["mean_ttft_ms"] == pytest.approx(1.0)
    none = report.figures({"errors": [], "ttfts": [], "latencies": [], "output_lens": []}, 1, [], 1)
    assert math.isnan(none.mean_ttft_ms)
    assert json.loads(json.dumps(report.to_json(none, none)))["tetriserve"]["mean_ttft_ms"] is None
    assert "| SLO attainment | 33.3% | 33.3% | 1.00x |" in report.to_markdown(ours, theirs, 60.0)


def test_cold_starts_are_grouped_by_the_rank_in_the_adapters_name() -> None:
    loads = [
        {"adapter": "a001-r16@6", "seconds": 0.002},
        {"adapter": "a005-r16", "seconds": 0.004},
        {"adapter": "a002-r64@7", "seconds": 0.010},
        {"adapter": "sql", "seconds": 1.0},  # no rank in its name: left out
    ]
    assert report.cold_starts_by_rank(loads) == {
        16: (2, pytest.approx(3.0)),
        64: (1, pytest.approx(10.0)),
    }
    assert "| vllm | 64 | 1 | 10.0 |" in report.cold_start_table({"vllm": loads})
