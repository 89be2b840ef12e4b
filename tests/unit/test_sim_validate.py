"""`sim validate`'s comparison: a client result turned into simulator requests, and the
rows that set live and simulated figures side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster.sim.validate import METRICS, requests_from_client, validation_rows
from deploy.cli import build_parser


def fake_client_result() -> dict:
    """The fields of vLLM's benchmark client's detailed result that the comparison reads;
    the third request failed."""
    return {
        "start_times": [100.5, 100.0, 101.0, 102.0],
        "input_lens": [40, 30, 50, 60],
        "output_lens": [8, 6, 0, 10],
        "errors": ["", "", "boom", ""],
        "ttfts": [0.2, 0.1, 0.0, 0.4],
        "latencies": [1.2, 1.0, 0.0, 2.0],
    }


def test_the_served_requests_become_simulator_requests_in_arrival_order() -> None:
    requests = requests_from_client(fake_client_result())
    assert [(r.arrival_s, r.prompt_tokens, r.output_tokens) for r in requests] == [
        (0.0, 30, 6),
        (0.5, 40, 8),
        (2.0, 60, 10),
    ]
    assert [r.index for r in requests] == [0, 1, 2]


def test_a_run_that_served_nothing_is_refused() -> None:
    result = fake_client_result() | {"errors": ["x"] * 4}
    with pytest.raises(ValueError, match="no request"):
        requests_from_client(result)


def test_rows_set_live_beside_simulated_with_the_error() -> None:
    requests = requests_from_client(fake_client_result())
    for request, (first, done) in zip(requests, [(0.2, 1.1), (0.7, 1.9), (2.5, 4.4)], strict=True):
        request.first_token_s, request.finished_s = first, done
    rows = validation_rows("LPHD", fake_client_result(), requests)
    assert [row["metric"] for row in rows] == list(METRICS)
    mean_ttft, _, mean_jct, _ = rows
    assert mean_ttft["live"] == pytest.approx((0.2 + 0.1 + 0.4) / 3)
    assert mean_ttft["sim"] == pytest.approx((0.2 + 0.2 + 0.5) / 3)
    assert mean_jct["sim"] == pytest.approx((1.1 + 1.4 + 2.4) / 3)
    for row in rows:
        assert row["workload"] == "LPHD"
        assert row["error"] == pytest.approx(row["sim"] / row["live"] - 1)


def test_validate_replays_an_earlier_run_and_names_a_missing_one(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    result = fake_client_result()
    (tmp_path / "results" / "tetriserve-LPHD.json").write_text(json.dumps(result))
    rows_path = tmp_path / "rows.json"
    argv = ["sim", "validate", "--live", str(tmp_path), "--workloads", "LPHD"]
    args = build_parser().parse_args([*argv, "--json", str(rows_path)])
    assert args.func(args) == 0
    rows = json.loads(rows_path.read_text())
    assert {(r["workload"], r["metric"]) for r in rows} == {("LPHD", m) for m in METRICS}
    assert all(r["sim"] > 0 and r["live"] > 0 for r in rows)
    args = build_parser().parse_args([*argv[:-1], "LPHD,HPLD"])
    with pytest.raises(SystemExit, match="HPLD"):
        args.func(args)
