"""Helpers the tests share: a free loopback port, a deployment served on a local Ray
cluster, the plain vLLM engine that serves as the correctness oracle, the KV path's
capability authority of the actor tests, and a clock that a test moves by hand."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cluster.config import DeploymentConfig
from cluster.kv_capability import CapabilityAuthority
from deploy.bench_servers import free_port

__all__ = ["KV_SECRET", "FakeClock", "free_port", "plain_vllm", "presenting", "serving"]

# The actor tests' deployment secret: their switch and memory nodes check capabilities
# minted under it.
KV_SECRET = b"the KV path secret of the actor tests"


class FakeClock:
    """A clock (a callable returning seconds) that stands still until a test moves `now`."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def serving(config: DeploymentConfig, namespace: str = "tetriserve-test") -> Iterator[str]:
    """`config` served by Ray Serve on a fresh local Ray cluster; yields its base URL."""
    import ray
    from ray import serve

    from deploy.app_builder import build_app, shut_down

    port = free_port()
    ray.init(namespace=namespace, include_dashboard=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(config), name="tetriserve", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        shut_down(config)


def presenting(client: Any, *tenants: int) -> Any:
    """`client`, presenting a capability for each of `tenants` from now on."""
    authority = CapabilityAuthority(KV_SECRET)
    for tenant in tenants:
        client.present(tenant, authority.mint(tenant))
    return client


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
