"""Killing the global scheduler or the adapter store mid-flight loses nothing.

Ray starts either again and sends it the calls that were under way. Requests in flight when
the scheduler dies, and requests sent while it restarts, end as 200s with the text of an
unfaulted run; afterwards the scheduler's in-flight count is back to zero. A request whose
adapter is fetched while the store restarts gets that adapter's text.

The other actor kinds are killed in tests/e2e/test_disaggregation.py, against plain vLLM's
text: a prefill instance, a decode instance, the switch and a memory node.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import ray

from cluster.config import DeploymentConfig
from tests.faults.cluster_counts import NAMESPACE, back_to, cluster_counts
from tests.faults.greedy import greedy_text
from tests.support import serving

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ADAPTERS = ["r8", "r16", "r32", "r64"]  # the tiny model's, none fetched before the kill
WORDS = ["serve", "prefill", "decode", "memory", "switch", "page", "token", "lease"]


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[str]:
    config = DeploymentConfig(model_dir=tiny_model, chunk_tokens=128, metrics_port=None)
    with serving(config) as url:
        yield url


def _complete(server: str, model: str, seed: int, max_tokens: int = 64) -> str:
    rng = random.Random(seed)
    prompt = " ".join(rng.choice(WORDS) for _ in range(5 + seed % 30))
    return greedy_text(server, prompt, max_tokens, model)


def _kill(name: str) -> None:
    ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=False)


def test_requests_survive_a_killed_scheduler(server: str) -> None:
    baseline = cluster_counts()
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
