"""`tetriserve batch` against a live deployment (the tiny model): a 200-line Batch API file
with bad lines in it is answered line for line, the greedy completions carry the HTTP
API's text, the bad lines carry their errors, and a run killed half-way is finished by a
rerun that keeps what the first run wrote and sends only the rest."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cluster.config import DeploymentConfig
from tests.support import serving

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

TETRISERVE = Path(sys.executable).parent / "tetriserve"
WORDS = ["batch", "line", "answer", "token", "prefill", "decode", "memory", "page"]
LINES = 200
KILL_AFTER = 40  # answers written before the first run is killed


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[str]:
    config = DeploymentConfig(model_dir=tiny_model, chunk_tokens=128, metrics_port=None)
    with serving(config, namespace="tetriserve-batch-test") as url:
        yield url


def _body(index: int) -> dict:
    rng = random.Random(index)
    prompt = " ".join(rng.choice(WORDS) for _ in range(4 + index % 12))
    return {"model": "base", "prompt": prompt, "max_tokens": 12, "temperature": 0}


# Input lines that are not valid requests (line index -> expected error) and requests the
# server refuses (-> expected status).
BAD_LINES = {
    10: "invalid_json",
    50: "invalid_url",
    90: "invalid_body",
    130: "duplicate_custom_id",
    170: "invalid_custom_id",
}
REFUSED = {30: 400, 110: 404}


def _input_line(index: int) -> str:
    line = {"custom_id": f"req-{index}", "method": "POST", "url": "/v1/completions"}
    body = _body(index)
    match BAD_LINES.get(index), REFUSED.get(index):
        case "invalid_json", _:
            return '{"custom_id": "req-10", "method": "POST"'
        case "invalid_url", _:
            line["url"] = "/v1/embeddings"
        case "invalid_body", _:
            body["stream"] = True
        case "duplicate_custom_id", _:
            line["custom_id"] = "req-0"
        case "invalid_custom_id", _:
            del line["custom_id"]
        case None, 400:
            body["max_tokens"] = -1
        case None, 404:
            body["model"] = "base:no-such-adapter"
    return json.dumps({**line, "body": body})


def _batch(server: str, tmp_path: Path) -> list[str]:
    source = tmp_path / "requests.jsonl"
    source.write_text("".join(f"{_input_line(i)}\n" for i in range(LINES)))
    out = tmp_path / "results.jsonl"
    return [str(TETRISERVE), "batch", "--url", server, "--input", str(source), "--output", str(out)]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _complete_lines(path: Path) -> list[str]:
    text = path.read_text() if path.exists() else ""
    return text.splitlines()[: text.count("\n")]


def test_a_batch_killed_half_way_is_finished_by_a_rerun(server: str, tmp_path: Path) -> None:
    command = _batch(server, tmp_path)
    output = tmp_path / "results.jsonl"
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while len(_complete_lines(output)) < KILL_AFTER:
        assert first.poll() is None, first.stdout.read().decode() if first.stdout else ""
        assert time.monotonic() < deadline, "the first run wrote too little"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    kept = _complete_lines(output)
    assert KILL_AFTER <= len(kept) < LINES

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{len(kept)} answered before" in rerun.stdout
    assert f"answered {LINES - len(kept)} lines" in rerun.stdout
    assert output.read_text().splitlines()[: len(kept)] == kept  # the first run's, as written

    records = _records(output)
    keys = [r["custom_id"] if r["custom_id"] is not None else r["line"] for r in records]
    assert len(keys) == len(set(keys)) == LINES  # every line once
    by_key = dict(zip(keys, records, strict=True))
    for index, code in BAD_LINES.items():
        nameless = code in ("invalid_json", "duplicate_custom_id", "invalid_custom_id")
        record = by_key[index + 1 if nameless else f"req-{index}"]  # line numbers count from 1
        assert record["response"] is None and record["error"]["code"] == code, record
    for index, status in REFUSED.items():
        response = by_key[f"req-{index}"]["response"]
        assert response["status_code"] == status and "message" in response["body"]["error"]

    served = [i for i in range(LINES) if i not in BAD_LINES and i not in REFUSED]
    for index in served[::10]:  # the HTTP API's greedy text, line by line
        direct = httpx.post(f"{server}/v1/completions", json=_body(index), timeout=120)
        answered = by_key[f"req-{index}"]["response"]
        assert answered["status_code"] == 200
        assert answered["body"]["choices"][0]["text"] == direct.json()["choices"][0]["text"]
        assert answered["request_id"] == answered["body"]["id"]
    statuses = {by_key[f"req-{i}"]["response"]["status_code"] for i in served}
    assert statuses == {200}
