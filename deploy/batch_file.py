"""The OpenAI Batch API's file formats, for `tetriserve batch`: what a line of the input asks
for, what a line of the output says, and which inputs an earlier run already answered.

Input, one JSON object per line: `{"custom_id", "method", "url", "body"}`. Output, one
per answered input line, in the order they were answered: `{"id", "custom_id",
"response": {"status_code", "request_id", "body"}, "error": null}` for a request the
server answered (whatever its status), or `{"id", "custom_id", "response": null,
"error": {"code", "message"}}` for a line that was never sent (it is not a valid request)
or that found no server. A line without a usable custom_id is answered with
`"custom_id": null` and its line number (`"line"`), which is how a rerun knows it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENDPOINTS = ("/v1/completions", "/v1/chat/completions")
# Answers that a rerun asks again: the server was overloaded or failed.
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
UNANSWERED = "unanswered"  # the error code of a line that found no answering server


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One valid input line: what to POST where."""

    line: int  # 1-based
    custom_id: str
    url: str
    body: dict[str, Any]

    @property
    def key(self) -> str:
        return self.custom_id


@dataclass(frozen=True, slots=True)
class BadLine:
    """An input line that is not a request this batch can send, and why."""

    line: int
    custom_id: str | None
    code: str
    message: str

    @property
    def key(self) -> str:
        return self.custom_id if self.custom_id is not None else line_key(self.line)


def line_key(line: int) -> str:
    """How a line without a usable custom_id is known across runs."""
    return f"line {line}"


def read_requests(path: Path) -> list[BatchRequest | BadLine]:
    """Every non-blank line of the input file, as a request or as the reason it is none. A
    custom_id seen on an earlier line makes the later line bad."""
    parsed: list[BatchRequest | BadLine] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            item = parse_line(number, text)
            if isinstance(item, BatchRequest) and item.custom_id in seen:
                message = f"custom_id {item.custom_id!r} is already used by an earlier line"
                item = BadLine(number, None, "duplicate_custom_id", message)
            if isinstance(item, BatchRequest):
                seen.add(item.custom_id)
            parsed.append(item)
    return parsed


def parse_line(number: int, text: str) -> BatchRequest | BadLine:
    try:
        line = json.loads(text)
    except json.JSONDecodeError as exc:
        return BadLine(number, None, "invalid_json", f"line {number} is not JSON: {exc}")
    if not isinstance(line, dict):
        return BadLine(number, None, "invalid_line", f"line {number} is not a JSON object")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return BadLine(number, None, "invalid_custom_id", "custom_id must be a non-empty string")

    def bad(code: str, message: str) -> BadLine:
        return BadLine(number, custom_id, code, message)

    if line.get("method") != "POST":
        return bad("invalid_method", f"method must be POST, not {line.get('method')!r}")
    url = line.get("url")
    if url not in ENDPOINTS:
        return bad("invalid_url", f"url must be one of {', '.join(ENDPOINTS)}, not {url!r}")
    body = line.get("body")
    if not isinstance(body, dict):
        return bad("invalid_body", "body must be a JSON object")
    if body.get("stream"):
        return bad("invalid_body", "a batch request cannot stream: leave stream out or false")
    return BatchRequest(number, custom_id, url, body)


def answer(request: BatchRequest, status_code: int, body: Any, request_id: str) -> dict:
    """The output line of a request the server answered."""
    response = {"status_code": status_code, "request_id": request_id, "body": body}
    return {"id": _record_id(), "custom_id": request.custom_id, "response": response, "error": None}


def failure(key: BatchRequest | BadLine, code: str, message: str) -> dict:
    """The output line of an input line that got no answer from the server."""
    record: dict[str, Any] = {
        "id": _record_id(),
        "custom_id": key.custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }
    if key.custom_id is None:
        record["line"] = key.line
    return record


def _record_id() -> str:
    return f"batch_req_{uuid.uuid4().hex}"


def settled(record: dict) -> bool:
    """Whether an output line is final; those that are not are asked again by a rerun."""
    error = record.get("error")
    if error is not None:
        return error.get("code") != UNANSWERED
    return record["response"]["status_code"] not in RETRIED_STATUSES


def record_key(record: dict) -> str:
    custom_id = record.get("custom_id")
    return custom_id if custom_id is not None else line_key(record["line"])


def keep_settled(path: Path) -> set[str]:
    """The keys of the input lines an earlier run answered for good. The output file is
    rewritten with those lines only: a line cut off by a killed run, and answers that a
    rerun asks again, go."""
    if not path.exists():
        return set()
    kept: list[str] = []
    keys: set[str] = set()
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(text)
            key, final = record_key(record), settled(record)
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            continue  # cut off mid-line
        if final and key not in keys:
            kept.append(text)
            keys.add(key)
    rewritten = path.with_suffix(path.suffix + ".tmp")
    rewritten.write_text("".join(f"{text}\n" for text in kept), encoding="utf-8")
    rewritten.replace(path)
    return keys
