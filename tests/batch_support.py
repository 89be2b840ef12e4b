"""A 200-line OpenAI Batch API file with bad lines in it, for `tetriserve batch`, and the
check of what a run killed half-way and then finished by a rerun wrote: every line answered
once, the first run's lines kept as written, the bad lines with their errors, and the greedy
completions equal to the HTTP API's. Used locally (tests/e2e/test_batch.py) and as Ray jobs
on a 3-node cluster (tests/e2e/test_multi_node.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx

WORDS = ["batch", "line", "answer", "token", "prefill", "decode", "memory", "page"]
LINES = 200
KILL_AFTER = 40  # answers written before the first run is killed

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


def request_body(index: int) -> dict:
    rng = random.Random(index)
    prompt = " ".join(rng.choice(WORDS) for _ in range(4 + index % 12))
    return {"model": "base", "prompt": prompt, "max_tokens": 12, "temperature": 0}


def _input_line(index: int) -> str:
    line = {"custom_id": f"req-{index}", "method": "POST", "url": "/v1/completions"}
    body = request_body(index)
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


def batch_arguments(server: str, directory: Path) -> list[str]:
    """`batch` and its flags, for an input file written into `directory` now."""
    source = directory / "requests.jsonl"
    source.write_text("".join(f"{_input_line(i)}\n" for i in range(LINES)))
    out = directory / "results.jsonl"
    return ["batch", "--url", server, "--input", str(source), "--output", str(out)]


def complete_lines(path: Path) -> list[str]:
    text = path.read_text() if path.exists() else ""
    return text.splitlines()[: text.count("\n")]


def check_finished_batch(server: str, output: Path, kept: list[str], rerun_log: str) -> None:
    """What a rerun after a kill left: see the module's docstring."""
    assert f"{len(kept)} answered before" in rerun_log
    assert f"answered {LINES - len(kept)} lines" in rerun_log
    assert output.read_text().splitlines()[: len(kept)] == kept  # the first run's, as written

    records = [json.loads(line) for line in output.read_text().splitlines()]
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
        direct = httpx.post(f"{server}/v1/completions", json=request_body(index), timeout=120)
        answered = by_key[f"req-{index}"]["response"]
        assert answered["status_code"] == 200
        assert answered["body"]["choices"][0]["text"] == direct.json()["choices"][0]["text"]
        assert answered["request_id"] == answered["body"]["id"]
    statuses = {by_key[f"req-{i}"]["response"]["status_code"] for i in served}
    assert statuses == {200}
