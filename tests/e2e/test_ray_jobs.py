"""`tetriserve bench workloads` and `tetriserve batch` run as Ray jobs against a `ray start
--head` cluster started from the project's environment (its `bin/` on the PATH, as an
activated virtual environment puts it), as the README says: `ray job submit --working-dir
. -- tetriserve ...`.

The benchmark, a small run (one workload, a few requests): the job finishes, both systems
served every request, `--json` holds one entry per workload with tetriserve's figures,
vLLM's and their ratios, and the CPU profile names the roles it saw at work; `sim
validate --live` replays tetriserve's requests from the run's output in the simulator. The
benchmark's own figures are not judged here: they are for people to read.

The batch, on a deployment of its own on the job's cluster: every line is answered, the
requests with their completions, the bad lines with their errors.
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
PROJECT = Path(__file__).resolve().parents[2]
# A loopback cluster of the test's own: no token to hand around.
ENV = {
    **os.environ,
    "RAY_AUTH_MODE": "disabled",
    "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
}
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
    # The simulator replays the requests tetriserve served (`sim validate` on this output).
    rows_path = tmp_path / "validate.json"
    validate = [
        str(BIN / "tetriserve"), "sim", "validate", "--live", str(tmp_path / "out"),
        "--workloads", "LPHD", "--json", str(rows_path),
    ]  # fmt: skip
    done = subprocess.run(validate, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads(rows_path.read_text())
    assert [row["metric"] for row in rows] == ["mean TTFT", "p99 TTFT", "mean JCT", "p99 JCT"]
    assert all(row["live"] > 0 and row["sim"] > 0 for row in rows)


def test_a_batch_runs_as_a_ray_job_on_a_deployment_of_its_own(
    head: str, tiny_model: Path, tmp_path: Path
) -> None:
    lines = [
        {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/completions", "body": body}
        for i, body in enumerate(
            {"model": "base", "prompt": f"a batch of {n} lines", "max_tokens": 8} for n in range(4)
        )
    ]
    source, results = tmp_path / "requests.jsonl", tmp_path / "results.jsonl"
    source.write_text(
        "".join(f"{json.dumps(line)}\n" for line in lines)
        + '{"custom_id": "cut", "method"\n'
        + json.dumps({**lines[0], "custom_id": "elsewhere", "url": "/v1/embeddings"})
        + "\n"
    )
    command = [
        str(BIN / "ray"), "job", "submit", "--address", head, "--working-dir", str(PROJECT),
        "--", "tetriserve", "batch", "--input", str(source), "--output", str(results),
        "--model", str(tiny_model), "--chunk-tokens", "128", "--serve-port", str(free_port()),
    ]  # fmt: skip
    job = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=840)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "answered 6 lines (2 with an error)" in job.stdout
    records = {r["custom_id"] or r["line"]: r for r in map(json.loads, results.open())}
    assert sorted(records, key=str) == [5, "elsewhere", "req-0", "req-1", "req-2", "req-3"]
    for index in range(4):
        response = records[f"req-{index}"]["response"]
        assert response["status_code"] == 200 and response["body"]["choices"][0]["text"]
    assert records[5]["error"]["code"] == "invalid_json"
    assert records["elsewhere"]["error"]["code"] == "invalid_url"
