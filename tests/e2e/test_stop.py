"""Stopping a deployment leaves nothing of its own in /dev/shm: the memory nodes give their
shared arenas back (where the pages' bytes would stay resident until the next memory node's
sweep), and the engines' processes, ended with their instances, unlink their queues and
semaphores (actors/engine/vllm_exit_with_owner.py). The node's core board stays: one file
per user, shared by every deployment on the node."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from actors.engine.core_share import board_path
from actors.kv.arena import arena_dir
from cluster.config import DeploymentConfig
from tests.support import serving

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
