"""Shared fixtures: the built-in tiny model, made once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cluster.model_factory import make_model

# The engine's CPU KV cache, in GiB, for every vLLM started by the tests.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("models") / "tiny", size="tiny", seed=0)
