"""`tetriserve bench lora` as a user runs it, on the tiny model with a few adapters: both
systems load them through their own API, serve the Zipf mix without a failure, and their
engines' cold starts are counted; the JSON, table and plot are written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.bench_lora_report import RATIO_FIGURES
from tests.support import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def test_bench_lora_compares_both_systems(tmp_path: Path) -> None:
    out, figures = tmp_path / "out", tmp_path / "lora.json"
    cli = Path(sys.executable).parent / "tetriserve"
    command = [
        str(cli), "bench", "lora", "--size", "tiny", "--adapters", "6", "--requests", "16",
        "--rate", "8", "--serve-port", str(free_port()), "--out", str(out), "--json", str(figures),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a cluster of its own
    env["TETRISERVE_HOME"] = str(tmp_path / "home")
    run = subprocess.run(command, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    payload = json.loads(figures.read_text())
    for system in ("tetriserve", "vllm"):
        assert payload[system]["failed"] == 0 and payload[system]["requests"] == 16
        assert payload[system]["cold_starts"] > 0  # six adapters, four LoRA slots
        assert 0.0 <= payload[system]["slo_attainment"] <= 1.0
    assert set(RATIO_FIGURES) <= set(payload["ratio"])
    assert (out / "lora.png").stat().st_size > 0
    assert "| SLO attainment |" in (out / "table.md").read_text()
