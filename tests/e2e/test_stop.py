"""Stopping a deployment leaves nothing of its own in /dev/shm: the memory nodes give their
shared arenas back (where the pages' bytes would stay resident until the next memory node's
sweep), and the engines' queues and semaphores go with their instances
(actors/engine/shm_janitor.py). The node's core board stays: one file per user, shared by
every deployment on the node. Ctrl-C stops `tetriserve serve` while it starts, too, and
leaves none of its processes running."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from actors.engine.core_share import board_path
from actors.kv.arena import arena_dir
from cluster.config import DeploymentConfig
from tests.support import free_port, serving

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# The engines' processes notice that their instance is gone within a second.
ENGINES_EXIT_WITHIN_S = 10.0


def _shared_memory() -> set[Path]:
    return set(arena_dir().iterdir()) - {board_path()}


def test_a_stopped_deployment_leaves_nothing_in_shared_memory(tiny_model: Path) -> None:
    before = _shared_memory()
    config = DeploymentConfig(model_dir=tiny_model, chunk_tokens=128, metrics_port=None)
    with serving(config) as url:
        body = {"model": "base", "prompt": "the memory node", "max_tokens": 4, "temperature": 0}
        assert httpx.post(f"{url}/v1/completions", json=body, timeout=120).status_code == 200
        ours = _shared_memory() - before
        # The memory node's arena, with the request's pages in it, and the engines' queues.
        arenas = [path for path in ours if path.name.startswith("tetriserve-arena-")]
        assert arenas and any(path.name.startswith("psm_") for path in ours)
    assert not any(path.exists() for path in arenas)  # given back before Ray stops
    deadline = time.monotonic() + ENGINES_EXIT_WITHIN_S
    while any(path.exists() for path in ours) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(path.name for path in ours if path.exists()) == []


def test_ctrl_c_stops_tetriserve_serve_while_it_starts(tiny_model: Path) -> None:
    ports = [str(free_port()) for _ in range(3)]
    command = [sys.executable, "-m", "deploy.cli", "serve", "--model", str(tiny_model)]
    command += ["--port", ports[0], "--grpc-port", ports[1], "--metrics-port", ports[2]]
    serve = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ours = psutil.Process(serve.pid)
    deadline = time.monotonic() + 120
    while not any("ServingInstance" in _title(p) for p in ours.children(recursive=True)):
        assert time.monotonic() < deadline and serve.poll() is None, "no engine started"
        time.sleep(0.5)
    started = ours.children(recursive=True)  # Ray's processes, the actors, the engines
    serve.send_signal(signal.SIGINT)
    try:
        output, _ = serve.communicate(timeout=60)
    finally:
        serve.send_signal(signal.SIGINT)  # a second Ctrl-C, once it serves
        serve.wait(timeout=600)
    assert serve.returncode == 130, output[-2000:]
    assert "stopped while starting" in output
    _, running = psutil.wait_procs(started, timeout=ENGINES_EXIT_WITHIN_S)
    assert [_title(p) for p in running if p.status() != psutil.STATUS_ZOMBIE] == []


def _title(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""
