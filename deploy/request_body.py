"""A client's JSON body, read at the front door before anything else looks at it.

Client → here (size, then syntax and depth) → deploy/openai_protocol.py (schema) → the request
path. The size is checked before a byte is parsed, from the declared length and again while
the body streams in, so an oversized body costs neither memory nor parse time (413). The
nesting depth is checked right after parsing (400), so that nothing downstream walks a
pathological structure.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from deploy.openai_protocol import APIError, bad_request

# Deeper than any OpenAI request needs (a chat message's content parts sit at depth 4).
MAX_JSON_DEPTH = 32


def body_too_large(max_bytes: int) -> APIError:
    return APIError(
        413,
        f"request body is larger than this server's limit of {max_bytes} bytes",
        "RequestTooLargeError",
    )


async def read_limited(
    headers: Mapping[str, str], chunks: AsyncIterator[bytes], max_bytes: int
) -> bytes:
    """The body's bytes, or a 413 as soon as it is known to pass `max_bytes`."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise body_too_large(max_bytes)
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise body_too_large(max_bytes)
        parts.append(chunk)
    return b"".join(parts)


def json_depth(value: Any) -> int:
    """How deeply `value`'s lists and objects nest (a scalar is depth 0), walked without
    recursion."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, depth = pending.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
    return deepest


def parse_object(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """`raw` as a JSON object; malformed, non-object or too deeply nested bodies are 400s."""
    too_deep = bad_request(f"request body nests deeper than {max_depth} levels")
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise too_deep from None
    if json_depth(payload) > max_depth:
        raise too_deep
    if not isinstance(payload, dict):
        raise bad_request("request body must be a JSON object")
    return payload
