"""The fault suite's clients: one greedy completion, which must be a 200, and the same
completion streamed, which may be cut off."""

from __future__ import annotations

import json

import httpx


def _body(prompt: str, max_tokens: int, model: str) -> dict:
    return {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
    }


def greedy_text(server: str, prompt: str, max_tokens: int, model: str = "base") -> str:
    body = _body(prompt, max_tokens, model)
    response = httpx.post(f"{server}/v1/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["text"]


def greedy_stream(server: str, prompt: str, max_tokens: int, model: str = "base") -> str | None:
    """`greedy_text`'s text, streamed; None when the stream was cut off before its end."""
    body = _body(prompt, max_tokens, model) | {"stream": True}
    pieces = []
    try:
        with httpx.stream("POST", f"{server}/v1/completions", json=body, timeout=60) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    pieces.append(json.loads(line.removeprefix("data: "))["choices"][0]["text"])
                if line == "data: [DONE]":
                    return "".join(pieces)
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return None
    return None
