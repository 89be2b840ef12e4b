"""Times one request's token stream as the client sees it and records it in the metrics."""

from __future__ import annotations

import time

from actors import metrics
from cluster.request import FinishReason, TokenDelta


class RequestTimer:
    def __init__(self, model: str, prompt_tokens: int) -> None:
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.started = self.last = time.monotonic()
        self.first_seen = False

    def step(self, delta: TokenDelta) -> None:
        now = time.monotonic()
        if delta.token_ids:
            if not self.first_seen:
                metrics.TTFT.labels(self.model).observe(now - self.started)
                self.first_seen = True
            else:
                metrics.INTER_TOKEN.labels(self.model).observe(now - self.last)
            self.last = now
        if delta.finished:
            reason = str(delta.finish_reason)
            metrics.E2E.labels(self.model).observe(now - self.started)
            metrics.REQUESTS.labels(self.model, reason).inc()
            metrics.PROMPT_TOKENS.labels(self.model).inc(self.prompt_tokens)
            metrics.GENERATION_TOKENS.labels(self.model).inc(delta.completion_tokens)

    def refused(self) -> None:
        metrics.REQUESTS.labels(self.model, str(FinishReason.ABORT)).inc()
