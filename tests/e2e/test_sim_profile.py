"""`tetriserve sim profile` times the live engine and writes a cost model the simulator runs.

The tiny model, a few probe sizes: the command starts a Ray cluster of its own and one
engine, then `sim tetriinfer` replays a workload on the file it wrote. `sim lora-profile`
times decode steps over the model's adapters by rank, and `sim caraserve` routes on its fits.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.sim.cost_model import load_cost_model

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPO_ROOT = Path(__file__).resolve().parents[2]


def _tetriserve(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "deploy.cli", *arguments]
    environment = {**os.environ, "RAY_ADDRESS": "local"}  # a cluster of its own
    return subprocess.run(
        command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=540
    )


def test_a_profiled_cost_model_loads_and_the_simulator_runs_on_it(tmp_path: Path) -> None:
    path = tmp_path / "tiny_here.json"
    profiled = _tetriserve(
        "sim", "profile", "--size", "tiny", "--out", str(path),
        "--batches", "1,2,4", "--contexts", "32,96",
    )  # fmt: skip
    assert profiled.returncode == 0, profiled.stdout + profiled.stderr
    assert f"wrote {path}" in profiled.stdout
    model = load_cost_model(path)
    assert model.name == "tiny_here" and "measured by `tetriserve sim profile`" in model.source
    assert list(model.prefill.tokens) == sorted(model.prefill.tokens)
    assert all(seconds > 0 for seconds in model.prefill.seconds)
    decode = model.decode
    assert min(decode.base_s, decode.per_sequence_s, decode.per_context_token_s) >= 0
    assert decode.seconds_for(4, 4 * 64) > 0
    assert model.kv_capacity_tokens > 0 and model.kv_transfer.setup_s > 0
    assert 0.0 <= json.loads(path.read_text())["decode_fit_r2"] <= 1.0

    rows_path = tmp_path / "rows.json"
    replayed = _tetriserve(
        "sim", "tetriinfer", "--cost-model", str(path), "--workloads", "LPHD",
        "--requests", "8", "--json", str(rows_path),
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    rows = json.loads(rows_path.read_text())
    assert [row["name"] for row in rows][:2] == ["LPHD TTFT", "LPHD JCT"]
    assert all(row["ours"] is None or row["ours"] > 0 for row in rows)


def test_contexts_that_do_not_fit_the_model_are_refused(tmp_path: Path) -> None:
    refused = _tetriserve(
        "sim", "profile", "--size", "tiny", "--out", str(tmp_path / "x.json"),
        "--contexts", "4000", "--max-model-len", "1024",
    )  # fmt: skip
    assert refused.returncode != 0
    assert "do not fit" in refused.stdout + refused.stderr
    assert not (tmp_path / "x.json").exists()


def test_a_lora_profile_fits_both_models_and_the_routers_run_on_it(tmp_path: Path) -> None:
    path = tmp_path / "lora.json"
    profiled = _tetriserve(
        "sim", "lora-profile", "--size", "tiny", "--out", str(path),
        "--batches", "1,2", "--context", "32",
    )  # fmt: skip
    assert profiled.returncode == 0, profiled.stdout + profiled.stderr
    fits = json.loads(path.read_text())
    # Two batch sizes, each at rank 8, rank 64, mixed and without an adapter.
    assert {(s["batch"], s["mix"]) for s in fits["samples"]} == {
        (b, m) for b in (1, 2) for m in ("r8", "r64", "mixed", "none")
    }
    assert all(sample["step_s"] > 0 for sample in fits["samples"])
    for padding in ("padded", "unpadded"):
        assert fits[padding]["r2"] <= 1.0
        assert math.isfinite(fits[padding]["per_unit_s"] + fits[padding]["base_s"])
    routed = _tetriserve(
        "sim", "caraserve", "--cost-model", str(path), "--requests", "50", "--rate", "5",
    )  # fmt: skip
    assert routed.returncode == 0, routed.stdout + routed.stderr
    assert "| rank_aware |" in routed.stdout and "| random |" in routed.stdout
