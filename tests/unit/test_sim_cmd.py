"""`tetriserve sim tetriinfer`: its flags, the rows `--json` writes, the table and
`--out`'s files, and bad input refused as a usage error (status 2)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from cluster.sim.tetriinfer_paper import METRICS
from deploy.cli import build_parser, main
from deploy.sim_cmd import DEFAULT_COST_MODEL, direction_agrees, json_rows, to_markdown


def _run(*flags: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "tetriinfer", *flags])
    assert exit_info.value.code == 0


def test_the_parser_takes_every_flag(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["sim", "tetriinfer", "--cost-model", "small_2cpu",
         "--workloads", "LPHD,Mixed", "--requests", "16", "--seed", "3", "--rate", "2.5",
         "--json", str(tmp_path / "rows.json"), "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert args.cost_model.name == "small_2cpu"
    assert (args.workloads, args.requests, args.seed, args.rate) == (["LPHD", "Mixed"], 16, 3, 2.5)
    assert (args.json, args.out) == (tmp_path / "rows.json", tmp_path / "out")


def test_defaults_are_the_opt13b_model_every_workload_and_all_at_once() -> None:
    args = build_parser().parse_args(["sim", "tetriinfer"])
    assert args.cost_model.name == DEFAULT_COST_MODEL
    assert args.workloads == ["LPLD", "LPHD", "HPLD", "HPHD", "Mixed"]
    assert (args.requests, args.seed, args.rate) == (128, 0, None)


def test_json_writes_one_row_per_workload_and_metric(tmp_path: Path, capsys) -> None:
    path = tmp_path / "rows.json"
    _run("--workloads", "LPHD,HPLD", "--requests", "16", "--json", str(path))
    rows = json.loads(path.read_text())
    expected = [f"{workload} {metric}" for workload in ("LPHD", "HPLD") for metric in METRICS]
    assert [row["name"] for row in rows] == expected
    assert all(set(row) == {"name", "ours", "paper", "ratio"} for row in rows)
    lphd_ttft = rows[0]
    assert lphd_ttft["paper"] == 0.03
    assert math.isclose(lphd_ttft["ratio"], lphd_ttft["ours"] / 0.03)
    assert rows[expected.index("HPLD perf/$")]["paper"] is None
    assert rows[expected.index("HPLD perf/$")]["ratio"] is None
    assert "| LPHD TTFT |" in capsys.readouterr().out


def test_out_writes_the_table_and_a_png(tmp_path: Path) -> None:
    _run("--workloads", "LPHD", "--requests", "16", "--out", str(tmp_path))
    table = (tmp_path / "table.md").read_text()
    assert "| name | ours | paper | ours/paper | direction agrees |" in table
    assert all(f"| LPHD {metric} |" in table for metric in METRICS)
    assert (tmp_path / "ratios.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unknown_figure_is_null_in_json_and_a_dash_in_the_table() -> None:
    row = {"name": "LPLD resource", "ours": math.nan, "paper": None, "ratio": None}
    assert json_rows([row]) == [dict(row, ours=None)]
    assert json_rows([dict(row, workload="LPLD")]) == [dict(row, ours=None)]  # only the four
    assert "| LPLD resource | — | — | — | — |" in to_markdown([row], "setting")


@pytest.mark.parametrize(
    ("ours", "paper", "name", "agrees"),
    [
        (0.5, 0.03, "LPHD TTFT", True),
        (1.5, 0.03, "LPHD TTFT", False),
        (1.2, 2.4, "LPHD perf/$", True),
        (0.9, 2.4, "LPHD perf/$", False),
        (0.9, None, "HPLD perf/$", True),  # the paper says only: vLLM is better per dollar
        (1.1, None, "HPLD perf/$", False),
        (0.9, None, "LPLD resource", None),
    ],
)
def test_direction_follows_the_paper_figure_or_its_stated_side(
    ours: float, paper: float | None, name: str, agrees: bool | None
) -> None:
    row = {"name": name, "ours": ours, "paper": paper, "ratio": None}
    assert direction_agrees(row) is agrees


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workloads", "LPHD,XYZ"], "unknown workloads ['XYZ']"),
        (["--cost-model", "no_such_model"], "no cost model 'no_such_model'"),
        (["--requests", "0"], "expected a positive integer"),
        (["--rate", "0"], "expected a positive rate"),
    ],
)
def test_bad_input_is_a_usage_error(flags: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "tetriinfer", *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_cost_model_too_short_for_the_workloads_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cluster.sim.cost_model import cost_model_to_dict, load_cost_model

    short = dataclasses.replace(load_cost_model("opt13b_tetriinfer"), max_model_len=1024)
    path = tmp_path / "short.json"
    path.write_text(json.dumps(cost_model_to_dict(short)))
    with pytest.raises(SystemExit) as ended:
        main(["sim", "tetriinfer", "--cost-model", str(path), "--requests", "4"])
    assert ended.value.code == 2
    assert "no room for a heavy prompt" in capsys.readouterr().err
