"""`tetriserve sim scale` on a tiny cluster: the figures `--json` writes, the three PNGs
`--out` plots, and bad input refused as a usage error (status 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.cli import build_parser, main
from deploy.sim_scale_cmd import DEFAULT_RATE_PER_DECODE

TINY = ("--prefill", "2", "--decode", "2", "--requests", "200", "--rate", "8")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _exit_code(*flags: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "scale", *flags])
    return exit_info.value.code


def test_defaults_are_a_thousand_instances_and_a_million_mixed_requests() -> None:
    args = build_parser().parse_args(["sim", "scale"])
    assert (args.prefill, args.decode, args.requests) == (500, 500, 1_000_000)
    assert (args.rate, args.workload, args.seed) == (None, "Mixed", 0)
    assert args.cost_model.name == "opt13b_tetriinfer"
    assert DEFAULT_RATE_PER_DECODE > 0


def test_json_holds_the_timing_and_latency_figures(tmp_path: Path, capsys) -> None:
    path = tmp_path / "scale.json"
    assert _exit_code(*TINY, "--json", str(path)) == 0
    figures = json.loads(path.read_text())
    assert {
        "prefill", "decode", "requests", "finished", "rate_per_s", "workload", "cost_model",
        "seed", "wall_s", "cpu_s", "events", "requests_per_s", "makespan_s", "ttft_s",
        "jct_s", "mean_utilisation", "flips",
    } <= set(figures)  # fmt: skip
    assert (figures["requests"], figures["finished"], figures["rate_per_s"]) == (200, 200, 8.0)
    assert set(figures["ttft_s"]) == set(figures["jct_s"]) == {"mean", "p50", "p99"}
    assert figures["jct_s"]["p99"] >= figures["jct_s"]["p50"] >= figures["ttft_s"]["p50"] > 0
    assert figures["events"] > 200
    assert "TTFT  mean" in capsys.readouterr().out


def test_out_plots_three_pngs(tmp_path: Path) -> None:
    assert _exit_code(*TINY, "--out", str(tmp_path)) == 0
    for name in ("ttft_cdf.png", "jct_cdf.png", "utilisation.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(
    "flags",
    [
        ("--prefill", "0"),
        ("--decode", "-1"),
        ("--requests", "many"),
        ("--rate", "0"),
        ("--workload", "LPXX"),
        ("--cost-model", "no_such_model"),
    ],
)
def test_bad_input_exits_with_status_2(flags: tuple[str, ...]) -> None:
    assert _exit_code(*flags) == 2
