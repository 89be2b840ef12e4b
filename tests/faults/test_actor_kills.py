"""Killing the global scheduler or the adapter store mid-flight loses nothing; killing the
ingress replica loses only the streams it was serving.

Ray starts either again and sends it the calls that were under way. Requests in flight when
the scheduler dies, and requests sent while it restarts, end as 200s with the text of an
unfaulted run; afterwards the scheduler's in-flight count is back to zero. A request whose
adapter is fetched while the store restarts gets that adapter's text. The streams of a
killed ingress replica end, each with its whole text or cut off (the replica held them),
none hanging; what they held in the cluster is back within 5 s, and Ray Serve's new
replica serves the unfaulted text within 30 s.

The other actor kinds are killed in tests/e2e/test_disaggregation.py, against plain vLLM's
text: a prefill instance, a decode instance, the switch and a memory node.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from cluster.config import DeploymentConfig
from tests.faults.cluster_counts import NAMESPACE, back_to, idle_counts
from tests.faults.greedy import greedy_stream, greedy_text
from tests.support import serving

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ADAPTERS = ["r8", "r16", "r32", "r64"]  # the tiny model's, none fetched before the kill
WORDS = ["serve", "prefill", "decode", "memory", "switch", "page", "token", "lease"]


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[str]:
    config = DeploymentConfig(model_dir=tiny_model, chunk_tokens=128, metrics_port=None)
    with serving(config) as url:
        yield url


def _prompt(seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(5 + seed % 30))


def _complete(server: str, model: str, seed: int, max_tokens: int = 64) -> str:
    return greedy_text(server, _prompt(seed), max_tokens, model)


def _kill(name: str) -> None:
    ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=False)


def test_requests_survive_a_killed_scheduler(server: str) -> None:
    baseline = idle_counts()
    unfaulted = [_complete(server, "base", seed) for seed in range(16)]
    with ThreadPoolExecutor(8) as pool:
        served = [pool.submit(_complete, server, "base", seed) for seed in range(16)]
        time.sleep(0.3)  # some are placed and decoding, others not yet sent
        _kill("global-scheduler")
        assert [done.result() for done in served] == unfaulted
    counts, waited = back_to(baseline, within_s=5.0)
    assert counts == baseline, f"still held after {waited:.1f} s"


def test_an_adapter_fetched_while_the_store_restarts_is_served(server: str) -> None:
    _kill("adapter-store")
    during = [_complete(server, f"base:{adapter}", 3, 24) for adapter in ADAPTERS]
    after = [_complete(server, f"base:{adapter}", 3, 24) for adapter in ADAPTERS]
    assert during == after
    assert len(set(after)) > 1  # the adapters were applied, and differ


def _ingress_replica() -> Any:
    (replica,) = [
        actor
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["name"].startswith("SERVE_REPLICA::tetriserve#OpenAIIngress#")
    ]
    return ray.get_actor(replica["name"], namespace=replica["namespace"])


def test_a_killed_ingress_replica_leaves_nothing_behind(server: str) -> None:
    baseline = idle_counts()
    unfaulted = [_complete(server, "base", seed, 200) for seed in range(8)]
    short = _complete(server, "base", 0, 16)
    with ThreadPoolExecutor(8) as pool:
        streams = [pool.submit(greedy_stream, server, _prompt(seed), 200) for seed in range(8)]
        time.sleep(1.0)  # placed, and decoding
        ray.kill(_ingress_replica(), no_restart=False)
        killed = time.monotonic()
        ended = [done.result() for done in streams]
    assert all(text in (unfaulted[seed], None) for seed, text in enumerate(ended)), ended
    counts, waited = back_to(baseline, within_s=5.0)
    assert counts == baseline, f"still held after {waited:.1f} s"
    while (served := _serve_again(server)) is None:
        assert time.monotonic() - killed < 30, "no new replica serves within 30 s"
        time.sleep(1)
    assert served == short


def _serve_again(server: str) -> str | None:
    try:
        return _complete(server, "base", 0, 16)
    except (AssertionError, httpx.HTTPError):  # no replica yet: a 503, or no connection
        return None
