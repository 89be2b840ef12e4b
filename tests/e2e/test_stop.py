"""Stopping a deployment gives its memory nodes' shared arenas back: nothing of its own is
left in /dev/shm, where the pages' bytes would stay resident until the next memory node's
sweep."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from actors.kv.arena import arena_dir
from cluster.config import DeploymentConfig
from tests.support import serving

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def _arenas() -> set[Path]:
    return set(arena_dir().glob("tetriserve-arena-*"))


def test_a_stopped_deployment_leaves_no_arena_behind(tiny_model: Path) -> None:
    before = _arenas()
    config = DeploymentConfig(model_dir=tiny_model, chunk_tokens=128, metrics_port=None)
    with serving(config) as url:
        body = {"model": "base", "prompt": "the memory node", "max_tokens": 4, "temperature": 0}
        assert httpx.post(f"{url}/v1/completions", json=body, timeout=120).status_code == 200
        ours = _arenas() - before
        assert ours  # the memory node's arena, with the request's pages in it
    assert not any(path.exists() for path in ours)
