"""The front door's body reading: a size limit enforced before parsing, and a depth limit
after it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from deploy.openai_protocol import APIError
from deploy.request_body import MAX_JSON_DEPTH, json_depth, parse_object, read_limited


async def _chunks(parts: list[bytes], pulled: list[int]) -> AsyncIterator[bytes]:
    for part in parts:
        pulled.append(len(part))
        yield part


def _read(headers: dict[str, str], parts: list[bytes], limit: int) -> tuple[bytes, list[int]]:
    pulled: list[int] = []
    body = asyncio.run(read_limited(headers, _chunks(parts, pulled), limit))
    return body, pulled


def test_a_body_within_the_limit_is_read_whole() -> None:
    body, _ = _read({"content-length": "6"}, [b"abc", b"def"], limit=6)
    assert body == b"abcdef"


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    pulled: list[int] = []
    with pytest.raises(APIError) as refused:
        asyncio.run(read_limited({"content-length": "7"}, _chunks([b"x" * 7], pulled), 6))
    assert refused.value.status == 413 and "6 bytes" in refused.value.message
    assert pulled == []


def test_an_undeclared_body_is_refused_once_it_passes_the_limit() -> None:
    pulled: list[int] = []
    parts = [b"x" * 4, b"x" * 4, b"x" * 4]
    with pytest.raises(APIError) as refused:
        asyncio.run(read_limited({}, _chunks(parts, pulled), 6))
    assert refused.value.status == 413
    assert pulled == [4, 4]  # the third chunk is never pulled


def test_json_depth_counts_nested_lists_and_objects() -> None:
    assert json_depth("x") == 0
    assert json_depth({"a": [1, {"b": []}]}) == 3


def test_an_object_within_the_depth_limit_parses() -> None:
    nested: object = 1
    for _ in range(MAX_JSON_DEPTH - 1):
        nested = [nested]
    assert parse_object(json.dumps({"x": nested}).encode()) == {"x": nested}


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_deeper_nesting_is_a_400(depth: int) -> None:
    raw = b'{"x": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(APIError) as refused:
        parse_object(raw)
    assert refused.value.status == 400 and "nests deeper" in refused.value.message


@pytest.mark.parametrize(
    ("raw", "says"), [(b"{bad", "not valid JSON"), (b"\xff", "not valid JSON"), (b"[1]", "object")]
)
def test_malformed_or_non_object_bodies_are_400s(raw: bytes, says: str) -> None:
    with pytest.raises(APIError) as refused:
        parse_object(raw)
    assert refused.value.status == 400 and says in refused.value.message
