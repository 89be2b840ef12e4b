"""Clients that leave, requests that end at once, and bursts leave nothing behind.

A client that disconnects at any stage (queued behind other prompts, in prefill, before the
response headers, in decode) has its request aborted everywhere: the scheduler's in-flight
count, the instances' queues and engines, and the memory nodes' leases and pages are back
to the idle deployment's within 5 s. So they are after 200 requests that end on their
first token and 200 disconnects at random stages.
A burst of 10x `max_outstanding` gets only 200s and 429s with Retry-After, and the serving
processes' resident memory stays bounded (the peak is printed).
"""

from __future__ import annotations

import json
import random
import socket
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from cluster.config import DeploymentConfig
from tests.faults.cluster_counts import back_to, idle_counts
from tests.support import serving

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

MAX_OUTSTANDING = 12
WITHIN_S = 5.0
LONG_WORDS = 450  # about 800 tokens of the tiny model's tokenizer
WORDS = ["serve", "prefill", "decode", "memory", "switch", "page", "token", "lease"]


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[str]:
    config = DeploymentConfig(
        model_dir=tiny_model,
        chunk_tokens=128,
        max_outstanding=MAX_OUTSTANDING,
        metrics_port=None,
    )
    with serving(config) as url:
        httpx.post(f"{url}/v1/completions", json=_body(8, 4), timeout=120).raise_for_status()
        yield url


@pytest.fixture
def baseline(server: str) -> dict[str, int]:
    return idle_counts()


def _body(words: int, max_tokens: int, stream: bool = False, seed: int = 0) -> dict:
    rng = random.Random(seed)
    return {
        "model": "base",
        "prompt": " ".join(rng.choice(WORDS) for _ in range(words)),
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": stream,
    }


def _leave(server: str, body: dict, *, after_s: float = 0.0, after_events: int = 0) -> int:
    """Sends `body`, then closes the connection `after_s` seconds later, or once
    `after_events` stream events came back; returns the events seen."""
    address = urlsplit(server)
    payload = json.dumps(body).encode()
    head = (
        f"POST /v1/completions HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    events = 0
    with socket.create_connection((address.hostname, address.port)) as sock:
        sock.sendall(head + payload)
        time.sleep(after_s)
        sock.settimeout(60)
        while events < after_events:
            chunk = sock.recv(65536)
            if not chunk:
                break
            events += chunk.count(b"data:")
    return events


def _stage_leavers(server: str) -> dict[str, object]:
    return {
        # Behind four long prompts, whose prefill takes the engine's token budget.
        "queued": lambda: _leave(server, _body(4, 900, stream=True), after_s=0.02),
        "in prefill": lambda: _leave(server, _body(LONG_WORDS, 200, stream=True), after_s=0.01),
        "before headers": lambda: _leave(server, _body(8, 900), after_s=0.5),
        "in decode": lambda: _leave(server, _body(8, 900, stream=True), after_events=3),
    }


@pytest.mark.parametrize("stage", ["queued", "in prefill", "before headers", "in decode"])
def test_a_client_that_leaves_at_any_stage_leaves_nothing_behind(
    server: str, baseline: dict[str, int], stage: str
) -> None:
    with ThreadPoolExecutor(4) as pool:
        long_prompts = [
            pool.submit(httpx.post, f"{server}/v1/completions", json=_body(LONG_WORDS, 1, seed=i))
            for i in range(4 if stage == "queued" else 0)
        ]
        _stage_leavers(server)[stage]()
        left = time.monotonic()
        assert all(done.result().status_code == 200 for done in long_prompts)
    counts, _ = back_to(baseline, within_s=WITHIN_S - (time.monotonic() - left))
    print(f"{stage}: back to the idle counts {time.monotonic() - left:.2f} s after leaving")
    assert counts == baseline


def _ends_on_first_token(server: str, i: int) -> int:
    body = _body(2 + i % 40, 1, seed=i)
    first = _first_token(server, body) if i % 2 else ""
    if first:  # a stop string that the first token hits
        body |= {"max_tokens": 50, "stop": [first]}
    for _ in range(20):
        response = httpx.post(f"{server}/v1/completions", json=body, timeout=120)
        if response.status_code != 429:
            break
        time.sleep(float(response.headers["Retry-After"]) / 10)
    assert response.status_code == 200, response.text
    return response.json()["usage"]["completion_tokens"]


def _first_token(server: str, body: dict) -> str:
    response = httpx.post(f"{server}/v1/completions", json=body | {"max_tokens": 1}, timeout=120)
    return response.json()["choices"][0]["text"]


def _leave_at_random(server: str, i: int) -> int:
    rng = random.Random(i)
    body = _body(rng.randint(2, 250), rng.randint(20, 500), stream=rng.random() < 0.5, seed=i)
    if body["stream"] and rng.random() < 0.5:
        return _leave(server, body, after_events=rng.randint(1, 5))
    return _leave(server, body, after_s=rng.uniform(0.0, 0.4))


def test_two_hundred_first_token_endings_and_disconnects_leave_nothing_behind(
    server: str, baseline: dict[str, int]
) -> None:
    with ThreadPoolExecutor(8) as pool:
        ended = list(pool.map(lambda i: _ends_on_first_token(server, i), range(200)))
        list(pool.map(lambda i: _leave_at_random(server, i), range(200)))
    assert Counter(ended) == {1: 200}
    counts, waited = back_to(baseline, within_s=WITHIN_S)
    held = {key: count for key, count in counts.items() if count != baseline[key]}
    print(f"held {waited:.1f} s after the last disconnect: {held or 'nothing'}")
    assert held == {}


def _serving_rss() -> int:
    """Resident bytes of the deployment's processes: Ray's actors and the engines."""
    total = 0
    for process in psutil.process_iter(["name", "cmdline", "memory_info"]):
        title = " ".join(process.info["cmdline"] or [])
        if title.startswith(("ray::", "VLLM::")) and process.info["memory_info"]:
            total += process.info["memory_info"].rss
    return total


def test_a_burst_of_ten_times_the_limit_gets_only_200s_and_429s_with_retry_after(
    server: str, baseline: dict[str, int]
) -> None:
    before = peak = _serving_rss()

    def send(i: int) -> httpx.Response:
        body = _body(4 + i % 50, 16, seed=i)
        return httpx.post(f"{server}/v1/completions", json=body, timeout=300)

    with ThreadPoolExecutor(10 * MAX_OUTSTANDING) as pool:
        burst = [pool.submit(send, i) for i in range(10 * MAX_OUTSTANDING)]
        while not all(done.done() for done in burst):
            peak = max(peak, _serving_rss())
            time.sleep(0.05)
    responses = [done.result() for done in burst]
    statuses = Counter(response.status_code for response in responses)
    mib = 2**20
    print(f"burst {dict(statuses)}: serving RSS {before / mib:.0f} MiB, peak {peak / mib:.0f} MiB")
    assert set(statuses) <= {200, 429} and statuses[200] >= MAX_OUTSTANDING
    refused = [response for response in responses if response.status_code == 429]
    assert all(float(response.headers["Retry-After"]) > 0 for response in refused)
    assert all(response.json()["error"]["code"] == 429 for response in refused)
    assert peak - before < 0.25 * before  # bounded: no copy per request held anywhere
    counts, _ = back_to(baseline, within_s=WITHIN_S)
    assert counts == baseline
