"""`tetriserve batch` against a live deployment (the tiny model): a 200-line Batch API file
with bad lines in it is answered line for line, the greedy completions carry the HTTP
API's text, the bad lines carry their errors, and a run killed half-way is finished by a
rerun that keeps what the first run wrote and sends only the rest."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.config import DeploymentConfig
from tests.batch_support import (
    KILL_AFTER,
    LINES,
    batch_arguments,
    check_finished_batch,
    complete_lines,
)
from tests.support import serving

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

TETRISERVE = Path(sys.executable).parent / "tetriserve"


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[str]:
    config = DeploymentConfig(model_dir=tiny_model, chunk_tokens=128, metrics_port=None)
    with serving(config, namespace="tetriserve-batch-test") as url:
        yield url


def test_a_batch_killed_half_way_is_finished_by_a_rerun(server: str, tmp_path: Path) -> None:
    command = [str(TETRISERVE), *batch_arguments(server, tmp_path)]
    output = tmp_path / "results.jsonl"
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while len(complete_lines(output)) < KILL_AFTER:
        assert first.poll() is None, first.stdout.read().decode() if first.stdout else ""
        assert time.monotonic() < deadline, "the first run wrote too little"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    kept = complete_lines(output)
    assert KILL_AFTER <= len(kept) < LINES

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    check_finished_batch(server, output, kept, rerun.stdout)
