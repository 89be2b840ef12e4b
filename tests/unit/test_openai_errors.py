"""Error bodies of the front door: OpenAI's shape, the status, and a 429's Retry-After."""

from __future__ import annotations

import asyncio
import json

from deploy.openai_app import _api_error
from deploy.openai_protocol import RETRY_AFTER_S, bad_request, overloaded


def _render(error: Exception) -> tuple[int, dict[str, str], dict]:
    response = asyncio.run(_api_error(None, error))  # type: ignore[arg-type]
    return response.status_code, dict(response.headers), json.loads(response.body)


def test_a_refusal_for_load_says_when_to_try_again() -> None:
    status, headers, body = _render(overloaded("256 requests in flight; the limit is reached"))
    assert status == 429
    assert headers["retry-after"] == str(RETRY_AFTER_S)
    assert body["error"]["type"] == "RateLimitError"
    assert body["error"]["code"] == 429


def test_a_bad_request_names_its_parameter_and_sets_no_retry() -> None:
    status, headers, body = _render(bad_request("seed: too large", "seed"))
    assert status == 400
    assert "retry-after" not in headers
    assert body["error"] == {
        "message": "seed: too large",
        "type": "BadRequestError",
        "param": "seed",
        "code": 400,
    }
