"""`tetriserve bench workloads` runs as a Ray job against a `ray start --head` cluster.

A small run (one workload, a few requests): the job finishes, both systems served every
request, `--json` holds one entry per workload with tetriserve's figures, vLLM's and their
ratios, and the CPU profile names the roles it saw at work. The benchmark's own figures
are not judged here: they are for people to read.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

BIN = Path(sys.executable).parent
# A loopback cluster of the test's own: no token to hand around.
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}
ENV.pop("RAY_ADDRESS", None)


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Ray head in its own process group (killed whole at the end); its dashboard URL."""
    dashboard = free_port()
    # Its own temp dir: the address file `ray start` leaves there is never found by a later
    # `ray.init()`, which would otherwise try to join this cluster after it is gone.
    temp_dir = tempfile.mkdtemp(prefix="ray-job-test-")
    command = [
        str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2",
        "--temp-dir", temp_dir,
        "--port", str(free_port()), "--dashboard-port", str(dashboard),
        "--dashboard-host", "127.0.0.1", "--disable-usage-stats",
    ]  # fmt: skip
    log = (tmp_path_factory.mktemp("ray") / "head.log").open("wb")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True
    )
    url = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_for(url, process)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_for(url: str, process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "ray start --head exited"
        try:
            if httpx.get(f"{url}/api/version", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise TimeoutError(f"no Ray dashboard at {url}")


def test_workloads_benchmark_runs_as_a_ray_job(head: str, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    command = [
        str(BIN / "ray"), "job", "submit", "--address", head, "--",
        str(BIN / "tetriserve"), "bench", "workloads", "--size", "tiny", "--workloads", "LPHD",
        "--requests", "4", "--warmup", "4", "--chunk-tokens", "128",
        "--serve-port", str(free_port()), "--out", str(tmp_path / "out"),
        "--json", str(results),
    ]  # fmt: skip
    job = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=840)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "length predictor" in job.stdout
    (entry,) = json.loads(results.read_text())
    assert entry["workload"] == "LPHD"
    for system in ("tetriserve", "vllm"):
        assert (entry[system]["requests"], entry[system]["failed"]) == (4, 0)
        assert entry[system]["ttft_mean_ms"] > 0 and entry[system]["jct_p99_ms"] > 0
    assert entry["ratio"]["ttft_mean_ms"] == pytest.approx(
        entry["tetriserve"]["ttft_mean_ms"] / entry["vllm"]["ttft_mean_ms"]
    )
    assert {"ttft.png", "jct.png", "ratio.png", "cpu.png", "table.md"} <= {
        path.name for path in (tmp_path / "out").iterdir()
    }
    # The profile saw both systems' engines and tetriserve's ingress at work.
    profile = json.loads((tmp_path / "out" / "results.json").read_text())["cpu_profile"]["LPHD"]
    for system in ("tetriserve", "vllm"):
        assert profile[system]["cpu_seconds"].get("engine workers", 0) > 0, profile
    assert profile["tetriserve"]["cpu_seconds"]["Serve ingress"] > 0
    assert "vLLM API server" not in profile["tetriserve"]["cpu_seconds"]
