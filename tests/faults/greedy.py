"""The fault suite's client: one greedy completion, which must be a 200."""

from __future__ import annotations

import httpx


def greedy_text(server: str, prompt: str, max_tokens: int, model: str = "base") -> str:
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
    }
    response = httpx.post(f"{server}/v1/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["text"]
