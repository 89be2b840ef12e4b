"""tetriserve on a 3-node Ray cluster on this machine, each node on its own loopback address
(127.0.0.2, 127.0.0.3, 127.0.0.4) with one custom resource: the deployment's placement puts
the prefill instance on the first node, the decode instance on the second, the memory node
and the switch on the third.

Each actor runs where its placement says; greedy text equals plain vLLM's; every request's
KV crosses nodes, through the switch at its node's address (Ray nodes share no memory,
even on one machine); every exporter that targets.json lists answers at the node address
it names. Then the decode instance's node is killed: the requests it held end (whole, or
with an error, none hanging), and new requests are served by the survivors within 60 s.
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
from pathlib import Path

import httpx
import pytest
import ray
from ray import serve

from cluster.config import DeploymentConfig
from deploy.app_builder import build_app, shut_down
from deploy.prometheus_config import actor_targets
from tests.support import free_port, plain_vllm

# Run on its own: `.venv/bin/python -m pytest -m multinode tests/e2e/test_multi_node.py`
# (deselected from the default run; see the marker in pyproject.toml).
pytestmark = [pytest.mark.e2e, pytest.mark.multinode, pytest.mark.timeout(900)]

BIN = Path(sys.executable).parent
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
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_worker_niceness": "0"}
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


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, subprocess.Popen]]:
    """The three nodes, started one after another, each `ray start --block` in its own
    process group (killed whole); this process joins them as a driver."""
    temp_dir = tempfile.mkdtemp(prefix="ray-multi-node-")
    logs = tmp_path_factory.mktemp("nodes")
    started: dict[str, subprocess.Popen] = {}
    head = None
    try:
        for ip, resource in NODES.items():
            for attempt in range(NODE_ATTEMPTS):
                command = _node_command(ip, resource, head, temp_dir)  # fresh ports each time
                address = head or f"{ip}:{command[command.index('--port') + 1]}"
                log = (logs / f"{ip}-{attempt}.log").open("wb")
                started[ip] = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True
                )
                if _joined(address, len(started), started[ip]):
                    head = address
                    break
                _kill(started[ip])  # `ray start` gives a node 30 s: a busy machine may need more
            else:
                pytest.fail(f"node {ip} did not start in {NODE_ATTEMPTS} attempts; logs in {logs}")
        os.environ["RAY_AUTH_MODE"] = "disabled"
        ray.init(address=head, namespace="tetriserve-multi-node-test")
        yield started
    finally:
        ray.shutdown()
        for process in started.values():
            _kill(process)
        os.environ.pop("RAY_AUTH_MODE", None)
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


@pytest.fixture(scope="module")
def deployment(reference: list[str], nodes: dict, tiny_model: Path) -> Iterator[tuple]:
    config = DeploymentConfig(
        model_dir=tiny_model,
        chunk_tokens=128,
        port=free_port(),
        metrics_port=free_port(),
        placement=PLACEMENT,
    )
    # One machine: a single HTTP proxy, on the head node (every node's would share a port).
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": config.port})
    try:
        serve.run(build_app(config), name="tetriserve", route_prefix="/")
        yield config, f"http://127.0.0.1:{config.port}"
    finally:
        shut_down(config)


def _complete(url: str, prompt: str) -> httpx.Response:
    body = {"model": "base", "prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0}
    return httpx.post(f"{url}/v1/completions", json=body | {"ignore_eos": True}, timeout=120)


def _actor_nodes() -> dict[str, str]:
    from ray.util.state import list_actors, list_nodes

    addresses = {node.node_id: node.node_ip for node in list_nodes()}
    alive = list_actors(filters=[("state", "=", "ALIVE")])
    return {actor.name: addresses[actor.node_id] for actor in alive if actor.name}


def test_placed_by_role_across_nodes_with_vllms_text(
    deployment: tuple[DeploymentConfig, str], reference: list[str]
) -> None:
    config, url = deployment
    placed = _actor_nodes()
    assert {name: placed.get(name) for name in EXPECTED} == EXPECTED

    texts = [_complete(url, prompt).json()["choices"][0]["text"] for prompt in PROMPTS]
    assert texts == reference

    switch = ray.get(ray.get_actor("switch-0").stats.remote())
    assert switch["ops"].get("WritePages", 0) >= len(PROMPTS)  # from the prefill's node
    assert switch["ops"].get("ReadPages", 0) >= len(PROMPTS)  # to the decode's node
    assert switch["bytes_carried"] > 0
    decode = ray.get(ray.get_actor("decode-0").stats.remote())
    assert decode["kv_tokens_loaded"] > 0  # the prompts' KV came across, not recomputed

    groups = actor_targets(config)
    assert {g["labels"]["actor"] for g in groups} == {"global-scheduler", "prefill-0", "decode-0"}
    for group in groups:
        (target,) = group["targets"]
        assert target.rsplit(":", 1)[0] == placed[group["labels"]["actor"]]
        assert "tetriserve:" in httpx.get(f"http://{target}/metrics", timeout=10).text


def test_a_killed_decode_node_leaves_a_service_that_serves_within_60_s(
    deployment: tuple[DeploymentConfig, str], nodes: dict, reference: list[str]
) -> None:
    _, url = deployment
    with ThreadPoolExecutor(4) as pool:
        held = [pool.submit(_complete, url, prompt) for prompt in PROMPTS]
        time.sleep(0.5)
        os.killpg(nodes["127.0.0.3"].pid, signal.SIGKILL)
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
