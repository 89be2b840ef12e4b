"""`tetriserve serve` as a user runs it: the official OpenAI client, streaming and not, bad
input answered with OpenAI-style 4xx errors, and a clean stop on Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# A fresh home: the first start makes the tiny model, profiles ChunkSize on a throwaway
# engine, then starts both engines, one after another (about 200 s on an idle 2-core
# machine, more on a busy one). The module timeout covers this fixture and the first test.
STARTUP_TIMEOUT_S = 600
METRICS_BASE_PORT = 29400
START_ATTEMPTS = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("home")
    log = (home / "serve.log").open("w")
    try:
        # A port free when chosen may be taken before the server binds it (Ray's own
        # exporters pick ports as they start): another server answering there means
        # starting again on other ports.
        for _ in range(START_ATTEMPTS):
            process, base = _start(home, log)
            outcome = _wait_until_up(process, base)
            if outcome == "up":
                break
            _stop(process)
            if outcome != "another server":
                pytest.fail(f"server did not come up:\n{(home / 'serve.log').read_text()[-4000:]}")
        else:
            pytest.fail("every port chosen was taken by another server")
        yield base
        assert _stop(process) == 0
    finally:
        log.close()


def _start(home: Path, log: Any) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cli = Path(sys.executable).parent / "tetriserve"
    ports = ["--port", str(port), "--grpc-port", str(free_port())]
    process = subprocess.Popen(
        [str(cli), "serve", *ports, "--metrics-port", str(METRICS_BASE_PORT)],
        env={**os.environ, "TETRISERVE_HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its local Ray cluster goes down with it, whatever happens
    )
    return process, f"http://127.0.0.1:{port}"


def _wait_until_up(process: subprocess.Popen, base: str) -> str:
    """ "up", "another server" (something else answers on the port) or "down"."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        # The proxy answers 404/503 until the app is deployed: wait between polls either way.
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(f"{base}/health", timeout=2)
            if answer.status_code == 200:
                is_ours = answer.headers.get("content-type", "").startswith("application/json")
                return "up" if is_ours and answer.json() == {"status": "ok"} else "another server"
        time.sleep(2)
    return "down"


def _stop(process: subprocess.Popen) -> int | None:
    """Ctrl-C as a user would; the whole process group is killed if that does not end it."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        return None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


def test_models_lists_base_and_every_adapter(client: openai.OpenAI) -> None:
    names = {model.id for model in client.models.list()}
    assert names == {"base", "base:r8", "base:r16", "base:r32", "base:r64"}


def test_completion_streaming_and_not_agree(client: openai.OpenAI) -> None:
    args = {"model": "base:r8", "prompt": "Hello there", "max_tokens": 10, "temperature": 0}
    whole = client.completions.create(**args)
    chunks = list(client.completions.create(**args, stream=True))
    assert whole.choices[0].text
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert whole.choices[0].finish_reason == chunks[-1].choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 10


def test_adapter_changes_the_completion(client: openai.OpenAI) -> None:
    texts = {
        model: client.completions.create(
            model=model, prompt="Hello there", max_tokens=10, temperature=0
        )
        .choices[0]
        .text
        for model in ("base", "base:r64")
    }
    assert texts["base"] != texts["base:r64"]


def test_chat_streaming_and_not_agree(client: openai.OpenAI) -> None:
    args = {
        "model": "base",
        "messages": [{"role": "user", "content": "Say something."}],
        "max_tokens": 8,
        "temperature": 0,
    }
    whole = client.chat.completions.create(**args)
    chunks = list(client.chat.completions.create(**args, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert whole.choices[0].message.content
    assert streamed == whole.choices[0].message.content


CHAT_HI = {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
BAD_REQUESTS = {
    "malformed json": ("/v1/completions", b"{bad", 400),
    "unknown adapter": ("/v1/completions", {"model": "base:nope", "prompt": "x"}, 404),
    "unknown model": ("/v1/completions", {"model": "gpt-4", "prompt": "x"}, 404),
    "max_tokens zero": ("/v1/completions", {"model": "base", "prompt": "x", "max_tokens": 0}, 400),
    "prompt over context": ("/v1/completions", {"model": "base", "prompt": "word " * 5000}, 400),
    "n out of range": ("/v1/completions", {"model": "base", "prompt": "x", "n": 5}, 400),
    "logprobs out of range": (
        "/v1/completions",
        {"model": "base", "prompt": "x", "logprobs": 50},
        400,
    ),
    "missing messages": ("/v1/chat/completions", {"model": "base"}, 400),
    "seed over int64": ("/v1/completions", {"model": "base", "prompt": "x", "seed": 2**70}, 400),
    "nested too deeply": (
        "/v1/completions",
        b'{"model": "base", "prompt": "x", "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        400,
    ),
    "body over the 4 MiB limit": (
        "/v1/completions",
        {"model": "base", "prompt": "x" * (4 * 2**20)},
        413,
    ),
    "best_of": ("/v1/completions", {"model": "base", "prompt": "x", "best_of": 3}, 400),
    "logit_bias": (
        "/v1/completions",
        {"model": "base", "prompt": "x", "logit_bias": {"a": 1}},
        400,
    ),
    "json response_format": (
        "/v1/chat/completions",
        {**CHAT_HI, "response_format": {"type": "json_object"}},
        400,
    ),
    "tools": (
        "/v1/chat/completions",
        {**CHAT_HI, "tools": [{"type": "function", "function": {"name": "f"}}]},
        400,
    ),
    "image part": (
        "/v1/chat/completions",
        {
            "model": "base",
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ],
        },
        400,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_input_gets_openai_error_and_server_keeps_serving(
    server: str, client: openai.OpenAI, case: str
) -> None:
    path, body, status = BAD_REQUESTS[case]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(
        server + path, content=content, headers={"content-type": "application/json"}, timeout=60
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert error["message"] and error["type"]
    after = client.completions.create(model="base", prompt="still up?", max_tokens=2)
    assert after.usage.completion_tokens == 2


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("POST", "/v1/nope", 404), ("GET", "/v1/completions", 405), ("PUT", "/v1/models", 405)],
)
def test_unknown_routes_and_methods_get_openai_errors(
    server: str, method: str, path: str, status: int
) -> None:
    response = httpx.request(method, server + path, timeout=60)
    assert response.status_code == status
    error = response.json()["error"]
    assert (error["code"], error["message"]) == (status, response.reason_phrase)


def test_a_huge_body_is_refused_while_a_concurrent_request_is_served(
    client: openai.OpenAI, server: str
) -> None:
    huge = b'{"model": "base", "prompt": "' + b"x" * (20 * 2**20) + b'"}'
    with ThreadPoolExecutor(2) as pool:
        refused = pool.submit(httpx.post, f"{server}/v1/completions", content=huge, timeout=60)
        served = pool.submit(
            client.completions.create, model="base", prompt="meanwhile", max_tokens=4
        )
        assert refused.result().status_code == 413
        assert served.result().usage.completion_tokens == 4


def test_negative_seeds_are_served_as_vllm_serves_them(client: openai.OpenAI) -> None:
    """vLLM takes any 64-bit signed seed, -1 meaning none; a seed repeats its sampled text."""
    args = {"model": "base", "prompt": "A seeded line:", "max_tokens": 8, "temperature": 1.0}
    first = client.completions.create(**args, seed=-7)
    again = client.completions.create(**args, seed=-7)
    assert first.usage.completion_tokens == 8
    assert first.choices[0].text == again.choices[0].text
    unseeded = client.completions.create(**args, seed=-1)
    assert unseeded.usage.completion_tokens == 8
