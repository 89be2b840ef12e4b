"""Helpers the end-to-end tests share: a free loopback port, and the plain vLLM engine
that serves as the correctness oracle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.bench_servers import free_port

__all__ = ["free_port", "plain_vllm"]


def plain_vllm(model_dir: Path, max_model_len: int = 1024, **overrides: Any):
    """One plain vLLM engine on the CPU settings tetriserve's engines use (greedy oracle)."""
    from vllm import LLM

    settings = {
        "model": str(model_dir),
        "dtype": "float32",
        "max_model_len": max_model_len,
        "block_size": 32,
        "enforce_eager": True,
        "enable_lora": True,
        "max_lora_rank": 64,
        "seed": 0,
    }
    return LLM(**(settings | overrides))
