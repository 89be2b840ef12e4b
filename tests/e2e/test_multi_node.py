"""tetriserve on a 3-node Ray cluster on this machine, each node on its own loopback address
(127.0.0.2, 127.0.0.3, 127.0.0.4) with one custom resource, deployed as a user would:
`tetriserve serve --address HEAD --placement FILE`, whose placement puts the prefill
instance on the first node, the decode instance on the second, the memory node and the
switch on the third.

Each actor runs where its placement says; greedy text equals plain vLLM's; every request's
KV crosses nodes, through the switch at its node's address (Ray nodes share no memory,
even on one machine); every exporter in the targets.json that `serve` writes answers at the
node address it names; a real Prometheus on the prometheus.yml `serve` writes finds data for
every query of the shipped dashboard and every signal of the shipped alerts. Ray jobs run on
the cluster: `tetriserve bench hw`, and a 200-line batch killed half-way and finished by a
rerun. Then the decode instance's node is killed: the requests it held end (whole, or with
an error, none hanging), and new requests are served by the survivors within 60 s. Last,
Ctrl-C stops `serve`: its actors go, and the Serve of the cluster it joined stays.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import ray
import yaml

from actors.model_shipping import COMPLETE, HOLDER_NAME, read_files
from tests.batch_support import (
    KILL_AFTER,
    LINES,
    batch_arguments,
    check_finished_batch,
    complete_lines,
)
from tests.prometheus_support import (
    assert_dashboard_and_alerts_find_data,
    running_prometheus,
    wait_for,
)
from tests.support import free_port, plain_vllm

pytestmark = [pytest.mark.e2e, pytest.mark.multinode, pytest.mark.timeout(1500)]

BIN = Path(sys.executable).parent
PROJECT = Path(__file__).resolve().parents[2]
SERVE_START_S = 420
NODES = {"127.0.0.2": "node_a", "127.0.0.3": "node_b", "127.0.0.4": "node_c"}
PLACEMENT = {
    "prefill": {"resources": {"node_a": 1}},
    "decode": {"resources": {"node_b": 1}},
    "memory_node": {"resources": {"node_c": 0.5}},
    "switch": {"resources": {"node_c": 0.5}},
}
EXPECTED = {
    "prefill-0": "127.0.0.2",
    "decode-0": "127.0.0.3",
    "memory-0": "127.0.0.4",
    "switch-0": "127.0.0.4",
}
PROMPTS = [
    "the memory node holds the pages of every prompt",
    "a prefill on one node and a decode on another",
    "bytes cross the switch",
]
MAX_TOKENS = 16
NODE_ATTEMPTS = 3
LIVE_NODE = re.compile(r"^ *1 node_[0-9a-f]{40,}$", re.MULTILINE)  # `ray status`, Active:
# A loopback cluster of the test's own: no token to hand around.
# Its jobs find the `tetriserve` command, as in an activated environment.
ENV = {
    **os.environ,
    "RAY_AUTH_MODE": "disabled",
    "RAY_worker_niceness": "0",
    "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
}
ENV.pop("RAY_ADDRESS", None)


def _node_command(ip: str, resource: str, head: str | None, temp_dir: str) -> list[str]:
    """`ray start` for one node, every port of its own (they share the machine)."""
    ports = {
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--metrics-export-port": free_port(),
        "--runtime-env-agent-port": free_port(),
    }
    command = [
        str(BIN / "ray"), "start", "--block", "--node-ip-address", ip, "--num-cpus", "1",
        "--resources", json.dumps({resource: 1}), "--disable-usage-stats",
        *(str(part) for flag, port in ports.items() for part in (flag, port)),
    ]  # fmt: skip
    if head is None:  # the dashboard serves the state API (where each actor runs)
        return [
            *command, "--head", "--port", str(free_port()), "--temp-dir", temp_dir,
            "--dashboard-host", ip, "--dashboard-port", str(free_port()),
            "--ray-client-server-port", str(free_port()),
        ]  # fmt: skip
    return [*command, "--address", head]


@dataclass(frozen=True)
class Cluster:
    nodes: dict[str, subprocess.Popen]  # node address -> its `ray start --block`
    address: str  # the head's GCS, for `--address`
    dashboard: str  # the head's dashboard URL: state API and jobs
    home: Path  # TETRISERVE_HOME of every node and of `serve`


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The three nodes, started one after another, each `ray start --block` in its own
    process group (killed whole)."""
    temp_dir = tempfile.mkdtemp(prefix="ray-multi-node-")
    logs = tmp_path_factory.mktemp("nodes")
    home = tmp_path_factory.mktemp("home")
    env = {**ENV, "TETRISERVE_HOME": str(home)}
    started: dict[str, subprocess.Popen] = {}
    head = dashboard = None
    try:
        for ip, resource in NODES.items():
            for attempt in range(NODE_ATTEMPTS):
                command = _node_command(ip, resource, head, temp_dir)  # fresh ports each time
                address = head or f"{ip}:{command[command.index('--port') + 1]}"
                log = (logs / f"{ip}-{attempt}.log").open("wb")
                started[ip] = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
                if _joined(address, len(started), started[ip]):
                    if head is None:
                        port = command[command.index("--dashboard-port") + 1]
                        dashboard = f"http://{ip}:{port}"
                    head = address
                    break
                _kill(started[ip])  # `ray start` gives a node 30 s: a busy machine may need more
            else:
                pytest.fail(f"node {ip} did not start in {NODE_ATTEMPTS} attempts; logs in {logs}")
        assert head is not None and dashboard is not None
        yield Cluster(started, head, dashboard, home)
    finally:
        for process in started.values():
            _kill(process)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(60)


def _joined(head: str, count: int, process: subprocess.Popen) -> bool:
    """Whether the cluster at `head` has `count` live nodes before `process` (the last
    node's `ray start`) gives up."""
    deadline = time.monotonic() + 180
    while process.poll() is None and time.monotonic() < deadline:
        status = subprocess.run(
            [str(BIN / "ray"), "status", "--address", head], env=ENV, capture_output=True, text=True
        )
        if (
            status.returncode == 0
            and len(LIVE_NODE.findall(status.stdout.split("Pending:")[0])) >= count
        ):
            return True
        time.sleep(1)
    return False


@pytest.fixture(scope="module")
def reference(tiny_model: Path) -> list[str]:
    from vllm import SamplingParams

    llm = plain_vllm(tiny_model)
    try:
        params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0, ignore_eos=True)
        return [out.outputs[0].text for out in llm.generate(PROMPTS, params)]
    finally:
        llm.llm_engine.engine_core.shutdown()


@dataclass(frozen=True)
class Deployment:
    url: str  # the OpenAI API
    home: Path  # TETRISERVE_HOME: prometheus.yml and prometheus/targets.json
    serving: subprocess.Popen  # `tetriserve serve`


@pytest.fixture(scope="module")
def deployment(
    reference: list[str],
    cluster: Cluster,
    tiny_model: Path,
) -> Iterator[Deployment]:
    """`tetriserve serve --address --placement`, in a process of its own until the last
    test stops it with Ctrl-C, as a user would (or the module ends); this process joins the
    cluster as a driver that only reads (the actors' stats)."""
    home = cluster.home
    placement = home / "placement.yaml"
    placement.write_text(yaml.safe_dump(PLACEMENT))
    port = free_port()
    command = [
        str(BIN / "tetriserve"), "serve", "--address", cluster.address,
        "--placement", str(placement), "--model", str(tiny_model), "--chunk-tokens", "128",
        "--port", str(port), "--grpc-port", str(free_port()),
        "--metrics-port", str(free_port()),
    ]  # fmt: skip
    log = home / "serve.log"
    process = subprocess.Popen(
        command,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**ENV, "TETRISERVE_HOME": str(home)},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + SERVE_START_S
        while "Ctrl-C stops" not in log.read_text():
            assert process.poll() is None, f"serve exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"serve did not start: {log.read_text()[-3000:]}"
            time.sleep(1)
        os.environ["RAY_AUTH_MODE"] = "disabled"
        ray.init(address=cluster.address, namespace="tetriserve")
        yield Deployment(f"http://127.0.0.1:{port}", home, process)
    finally:
        ray.shutdown()
        os.environ.pop("RAY_AUTH_MODE", None)
        process.send_signal(signal.SIGINT)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            _kill(process)


def _complete(url: str, prompt: str) -> httpx.Response:
    body = {"model": "base", "prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0}
    return httpx.post(f"{url}/v1/completions", json=body | {"ignore_eos": True}, timeout=120)


def _actor_nodes(dashboard: str, names: set[str]) -> dict[str, str]:
    """Actor name -> the address of its node, for the live named actors, once the state
    API lists all of `names` (a listing can miss an actor for a moment)."""
    from ray.util.state import list_actors, list_nodes

    deadline = time.monotonic() + 60
    while True:
        addresses = {node.node_id: node.node_ip for node in list_nodes(address=dashboard)}
        alive = list_actors(address=dashboard, filters=[("state", "=", "ALIVE")])
        placed = {a.name: addresses[a.node_id] for a in alive if a.name and a.node_id in addresses}
        if names <= placed.keys() or time.monotonic() > deadline:
            return placed
        time.sleep(1)


def test_placed_by_role_across_nodes_with_vllms_text(
    cluster: Cluster, deployment: Deployment, reference: list[str], tiny_model: Path
) -> None:
    placed = _actor_nodes(cluster.dashboard, {*EXPECTED, HOLDER_NAME, "global-scheduler"})
    assert {name: placed.get(name) for name in EXPECTED} == EXPECTED

    texts = [_complete(deployment.url, prompt).json()["choices"][0]["text"] for prompt in PROMPTS]
    assert texts == reference

    switch = ray.get(ray.get_actor("switch-0").stats.remote())
    assert switch["ops"].get("WritePages", 0) >= len(PROMPTS)  # from the prefill's node
    assert switch["ops"].get("ReadPages", 0) >= len(PROMPTS)  # to the decode's node
    assert switch["bytes_carried"] > 0
    decode = ray.get(ray.get_actor("decode-0").stats.remote())
    assert decode["kv_tokens_loaded"] > 0  # the prompts' KV came across, not recomputed
    # The checkpoint: in place on the node of its holder (where serve built the
    # deployment), through the object store into each other node's own cache.
    fetched = 0
    for name in ("prefill-0", "decode-0"):
        model_dir = Path(ray.get(ray.get_actor(name).stats.remote())["model_dir"])
        if placed[name] == placed[HOLDER_NAME]:
            assert model_dir == tiny_model
            continue
        fetched += 1
        assert model_dir.parent == cluster.home / "models" / "by-hash"
        assert read_files(model_dir) == {
            **read_files(tiny_model),
            COMPLETE: (model_dir / COMPLETE).read_bytes(),
        }
    assert fetched >= 1  # prefill and decode are on two nodes

    groups = json.loads((deployment.home / "prometheus" / "targets.json").read_text())
    assert {g["labels"]["actor"] for g in groups} == {"global-scheduler", "prefill-0", "decode-0"}
    for group in groups:
        (target,) = group["targets"]
        assert target.rsplit(":", 1)[0] == placed[group["labels"]["actor"]]
        assert "tetriserve:" in httpx.get(f"http://{target}/metrics", timeout=10).text


def test_prometheus_on_serves_own_config_finds_every_panel_and_alert_signal(
    deployment: Deployment, tmp_path: Path
) -> None:
    for prompt in PROMPTS:
        assert _complete(deployment.url, prompt).status_code == 200
    with running_prometheus(deployment.home / "prometheus.yml", tmp_path) as prometheus:
        crossed = wait_for(prometheus, "sum(tetriserve:kv_transfer_bytes_total) > 0")
        assert float(crossed[0]["value"][1]) > 0
        assert_dashboard_and_alerts_find_data(prometheus)
        engines = wait_for(prometheus, "count by (actor, role) (vllm:num_requests_running)")
        assert {(s["metric"]["actor"], s["metric"]["role"]) for s in engines} == {
            ("prefill-0", "prefill"),
            ("decode-0", "decode"),
        }


def _job(cluster: Cluster, *arguments: str, wait: bool = True) -> subprocess.CompletedProcess:
    command = [
        str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard,
        "--working-dir", str(PROJECT), *([] if wait else ["--no-wait"]),
        "--", "tetriserve", *arguments,
    ]  # fmt: skip
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)


def test_ray_jobs_run_the_hardware_bench_and_a_batch_killed_half_way(
    cluster: Cluster, deployment: Deployment, tmp_path: Path
) -> None:
    figures = tmp_path / "hw.json"
    bench = _job(cluster, "bench", "hw", "--json", str(figures))
    assert bench.returncode == 0, bench.stdout + bench.stderr
    assert json.loads(figures.read_text())

    arguments = batch_arguments(deployment.url, tmp_path)
    output = tmp_path / "results.jsonl"
    first = _job(cluster, *arguments, wait=False)
    assert first.returncode == 0, first.stdout + first.stderr
    job_id = re.search(r"raysubmit_\w+", first.stdout + first.stderr).group(0)
    deadline = time.monotonic() + 300
    while len(complete_lines(output)) < KILL_AFTER:
        assert time.monotonic() < deadline, "the first run wrote too little"
        time.sleep(0.05)
    stop = [str(BIN / "ray"), "job", "stop", "--address", cluster.dashboard, job_id]
    subprocess.run(stop, env=ENV, capture_output=True, timeout=120, check=True)
    kept = complete_lines(output)
    assert KILL_AFTER <= len(kept) < LINES

    rerun = _job(cluster, *arguments)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    check_finished_batch(deployment.url, output, kept, rerun.stdout + rerun.stderr)


def test_a_killed_decode_node_leaves_a_service_that_serves_within_60_s(
    cluster: Cluster, deployment: Deployment, reference: list[str]
) -> None:
    url = deployment.url
    with ThreadPoolExecutor(4) as pool:
        held = [pool.submit(_complete, url, prompt) for prompt in PROMPTS]
        time.sleep(0.5)
        os.killpg(cluster.nodes["127.0.0.3"].pid, signal.SIGKILL)
        killed = time.monotonic()
        for done in held:  # whole, or ended with an error; none hangs
            response = done.result(timeout=120)
            if response.status_code == 200:
                assert response.json()["choices"][0]["text"] in reference
            else:
                assert "message" in response.json()["error"], response.text
    while True:
        try:
            answer = _complete(url, PROMPTS[0])
            if answer.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() - killed < 60, "no survivor serves within 60 s"
        time.sleep(1)
    assert answer.json()["choices"][0]["text"] == reference[0]


def test_ctrl_c_stops_the_deployment_and_leaves_the_clusters_serve(
    cluster: Cluster, deployment: Deployment
) -> None:
    deployment.serving.send_signal(signal.SIGINT)
    assert deployment.serving.wait(120) == 0
    from ray.util.state import list_actors

    alive = list_actors(address=cluster.dashboard, filters=[("state", "=", "ALIVE")])
    names = {actor.name for actor in alive}
    assert not names & {"prefill-0", "global-scheduler", "switch-0", HOLDER_NAME}
    assert "ServeController" in {actor.class_name for actor in alive}  # the cluster's Serve
