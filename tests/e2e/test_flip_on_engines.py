"""Instance flip on real engines: a prefill instance drains, becomes a decode instance
without reloading its model, and no request is lost or changed on the way.

Two instances start in the prefill role and one in the decode role. An operator flip of
`prefill-1` is asked while requests are in flight: every request still gets its reference
text, the scheduler confirms the flip, and afterwards the flipped instance decodes. A
scheduler killed after the flip comes back with the deployment's first roles and follows
the roles the instances report.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import ray
from ray import serve

from cluster.config import DeploymentConfig, SchedulingConfig
from deploy.app_builder import build_app, shut_down
from tests.support import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

NAMESPACE = "tetriserve-flip-test"
PROMPTS = [f"page {i} lease node chunk token " * (1 + i % 5) for i in range(8)]
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[str]:
    port = free_port()
    ray.init(namespace=NAMESPACE, include_dashboard=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    config = DeploymentConfig(
        model_dir=tiny_model,
        chunk_tokens=128,
        prefill=2,
        decode=1,
        metrics_port=None,
        share_cores=False,  # each engine on its own core: the roles under test are theirs
        scheduling=SchedulingConfig(flip=False),
    )
    serve.run(build_app(config), name="tetriserve", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    shut_down(config)


async def _complete_all(base_url: str) -> list[str]:
    async with httpx.AsyncClient(base_url=base_url, timeout=120.0) as client:
        replies = await asyncio.gather(
            *(
                client.post(
                    "/v1/completions",
                    json={"model": "base", "prompt": p, "max_tokens": MAX_TOKENS, "temperature": 0},
                )
                for p in PROMPTS
            )
        )
    assert [r.status_code for r in replies] == [200] * len(PROMPTS)
    assert all(r.json()["usage"]["completion_tokens"] == MAX_TOKENS for r in replies)
    return [r.json()["choices"][0]["text"] for r in replies]


def _wait_for_flip(scheduler, timeout_s: float = 30.0) -> dict:
    async def poll() -> dict:
        for _ in range(int(timeout_s / 0.2)):
            stats = await scheduler.stats.remote()
            if stats["flips"]:
                return stats
            await asyncio.sleep(0.2)
        raise AssertionError("the flip was never confirmed")

    return asyncio.run(poll())


def test_flip_loses_nothing_and_the_flipped_instance_decodes(server: str) -> None:
    references = asyncio.run(_complete_all(server))
    scheduler = ray.get_actor("global-scheduler", namespace=NAMESPACE)
    flipped = ray.get_actor("prefill-1", namespace=NAMESPACE)
    decodes_before = ray.get(flipped.stats.remote())["requests"]

    async def flip_under_load() -> list[str]:
        texts = asyncio.create_task(_complete_all(server))
        await asyncio.sleep(0.05)
        await scheduler.request_flip.remote("prefill-1")
        return await texts

    assert asyncio.run(flip_under_load()) == references
    stats = _wait_for_flip(scheduler)
    assert stats["flips"] == [["prefill-1", "decode"]] or stats["flips"] == [
        ("prefill-1", "decode")
    ]
    assert stats["roles"] == {"prefill-0": "prefill", "prefill-1": "decode", "decode-0": "decode"}
    instance = ray.get(flipped.stats.remote())
    assert (instance["role"], instance["flips"]) == ("decode", 1)

    assert asyncio.run(_complete_all(server)) == references
    assert ray.get(flipped.stats.remote())["requests"] > decodes_before


def test_a_scheduler_started_again_follows_the_flipped_roles(server: str) -> None:
    references = asyncio.run(_complete_all(server))
    flipped = ray.get_actor("prefill-1", namespace=NAMESPACE)
    scheduler = ray.get_actor("global-scheduler", namespace=NAMESPACE)
    if ray.get(flipped.stats.remote())["role"] == "prefill":  # run alone: flip it first
        ray.get(scheduler.request_flip.remote("prefill-1"))
        _wait_for_flip(scheduler)
    ray.kill(scheduler, no_restart=False)
    flipped_roles = {"prefill-0": "prefill", "prefill-1": "decode", "decode-0": "decode"}

    async def roles_followed() -> dict:
        scheduler = ray.get_actor("global-scheduler", namespace=NAMESPACE)
        for _ in range(100):
            try:
                roles = (await scheduler.stats.remote())["roles"]
            except ray.exceptions.RayActorError:  # still starting again
                roles = {}
            if roles == flipped_roles:
                return roles
            await asyncio.sleep(0.2)
        return roles

    assert asyncio.run(_complete_all(server)) == references  # places, and starts the monitor
    assert asyncio.run(roles_followed()) == flipped_roles
    assert asyncio.run(_complete_all(server)) == references
