"""The Batch API file formats of `tetriserve batch`: which input lines are requests, what
each bad one is told, and what a rerun keeps of an earlier run's output."""

from __future__ import annotations

import json
from pathlib import Path

from deploy import batch_file
from deploy.batch_file import BadLine, BatchRequest

BODY = {"model": "base", "prompt": "hello", "max_tokens": 4}


def _line(**fields: object) -> str:
    line = {"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": BODY}
    line.update(fields)
    return json.dumps({k: v for k, v in line.items() if v is not None})


def _write(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def test_valid_lines_become_requests_in_file_order(tmp_path: Path) -> None:
    chat = {"model": "base", "messages": [{"role": "user", "content": "hi"}]}
    path = _write(
        tmp_path / "in.jsonl",
        _line(custom_id="first"),
        "",
        _line(custom_id="second", url="/v1/chat/completions", body=chat),
    )
    assert batch_file.read_requests(path) == [
        BatchRequest(1, "first", "/v1/completions", BODY),
        BatchRequest(3, "second", "/v1/chat/completions", chat),
    ]


def test_each_bad_line_is_told_why(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "in.jsonl",
        "{not json",
        "[1, 2]",
        _line(custom_id=""),
        _line(custom_id="get", method="GET"),
        _line(custom_id="embed", url="/v1/embeddings"),
        _line(custom_id="nobody", body="text"),
        _line(custom_id="streams", body={**BODY, "stream": True}),
        _line(custom_id="once"),
        _line(custom_id="once"),
    )
    items = batch_file.read_requests(path)
    codes = [(item.line, item.custom_id, getattr(item, "code", None)) for item in items]
    assert codes == [
        (1, None, "invalid_json"),
        (2, None, "invalid_line"),
        (3, None, "invalid_custom_id"),
        (4, "get", "invalid_method"),
        (5, "embed", "invalid_url"),
        (6, "nobody", "invalid_body"),
        (7, "streams", "invalid_body"),
        (8, "once", None),
        (9, None, "duplicate_custom_id"),
    ]
    assert "'once' is already used" in items[8].message
    assert [item.key for item in items[:3]] == ["line 1", "line 2", "line 3"]


def test_a_line_without_custom_id_is_answered_with_its_line_number() -> None:
    record = batch_file.failure(BadLine(7, None, "invalid_json", "line 7 is not JSON"), "x", "y")
    assert record["custom_id"] is None and record["line"] == 7
    assert record["response"] is None and record["error"] == {"code": "x", "message": "y"}
    assert batch_file.record_key(record) == "line 7"
    named = batch_file.failure(BadLine(8, "b", "invalid_url", "..."), "invalid_url", "...")
    assert "line" not in named and batch_file.record_key(named) == "b"


def test_an_answer_carries_the_servers_status_and_body() -> None:
    request = BatchRequest(1, "a", "/v1/completions", BODY)
    record = batch_file.answer(request, 400, {"error": {"message": "bad"}}, "cmpl-1")
    assert record["id"].startswith("batch_req_")
    assert record["custom_id"] == "a" and record["error"] is None
    assert record["response"] == {
        "status_code": 400,
        "request_id": "cmpl-1",
        "body": {"error": {"message": "bad"}},
    }


def test_overload_failures_and_no_answer_are_asked_again_other_answers_are_final() -> None:
    request = BatchRequest(1, "a", "/v1/completions", BODY)
    final = [200, 400, 404, 413]
    again = [429, 500, 503]
    assert all(batch_file.settled(batch_file.answer(request, s, {}, "")) for s in final)
    assert not any(batch_file.settled(batch_file.answer(request, s, {}, "")) for s in again)
    assert not batch_file.settled(batch_file.failure(request, batch_file.UNANSWERED, "down"))
    assert batch_file.settled(batch_file.failure(request, "invalid_url", "no"))


def test_a_rerun_keeps_final_answers_and_drops_the_rest(tmp_path: Path) -> None:
    request = BatchRequest(1, "a", "/v1/completions", BODY)
    ok = json.dumps(batch_file.answer(request, 200, {"id": "x"}, "x"))
    overloaded = json.dumps(
        batch_file.answer(BatchRequest(2, "b", "/v1/completions", BODY), 429, {}, "")
    )
    bad = json.dumps(
        batch_file.failure(BadLine(3, None, "invalid_json", "..."), "invalid_json", "...")
    )
    output = _write(tmp_path / "out.jsonl", ok, overloaded, bad, ok, '{"id": "batch_req_cut", "cus')
    assert batch_file.keep_settled(output) == {"a", "line 3"}
    assert output.read_text().splitlines() == [ok, bad]  # once each; cut line and 429 gone
    assert batch_file.keep_settled(tmp_path / "none.jsonl") == set()
