"""Clio's connectionless transport: request ids, loss, NACKs, timeouts and retries.

Each request carries an id and its response is its acknowledgement. When a request or its
response is lost the client times out; when the board refuses it (NACK) the client learns at
once; either way it resends the whole request under a new id that also names the first
attempt. The board keeps the ids (and answers) of the write and atomic requests it executed
recently, in a buffer of 3 x timeout x bandwidth requests: a resend of a request that did
execute is answered from that buffer instead of running twice, so a lost response never turns
one test-and-set into two.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from fpga_models.clio.errors import RequestFailed
from fpga_models.clio.params import ClioParams

T = TypeVar("T")


@dataclass(slots=True)
class TransportStats:
    requests: int = 0
    attempts: int = 0
    timeouts: int = 0
    nacks: int = 0
    dedup_hits: int = 0


class DedupBuffer:
    """Recently executed write/atomic request ids and their answers, oldest out first."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._answers: OrderedDict[int, Any] = OrderedDict()

    def remember(self, request_id: int, answer: Any) -> None:
        self._answers[request_id] = answer
        if len(self._answers) > self.entries:
            self._answers.popitem(last=False)

    def lookup(self, request_id: int) -> tuple[bool, Any]:
        if request_id in self._answers:
            return True, self._answers[request_id]
        return False, None

    def __len__(self) -> int:
        return len(self._answers)


class Transport:
    """Delivers one request with retries; `execute` runs it on the board exactly once."""

    def __init__(self, params: ClioParams, rng: np.random.Generator) -> None:
        self.params = params
        self.rng = rng
        self.dedup = DedupBuffer(params.dedup_buffer_entries)
        self.stats = TransportStats()
        self._next_id = 1

    def deliver(
        self,
        execute: Callable[[], tuple[T, float]],
        *,
        mutating: bool,
        round_trip_ns: float,
    ) -> tuple[T, float]:
        """Run `execute` (answer, latency) through the lossy network; returns the answer and
        the latency the client saw, timeouts and resends included."""
        self.stats.requests += 1
        first_id: int | None = None
        waited = 0.0
        for _ in range(self.params.max_retries + 1):
            self.stats.attempts += 1
            request_id = self._new_id()
            first_id = request_id if first_id is None else first_id
            if self._lost():
                waited += self._timeout()
                continue
            if self._chance(self.params.nack_rate):
                self.stats.nacks += 1
                waited += round_trip_ns
                continue
            executed, answer = self.dedup.lookup(first_id) if mutating else (False, None)
            if executed:
                self.stats.dedup_hits += 1
                cost = round_trip_ns
            else:
                answer, cost = execute()
                if mutating:
                    self.dedup.remember(first_id, answer)
            if self._lost():
                waited += self._timeout()
                continue
            return answer, waited + cost
        raise RequestFailed(f"no answer after {self.params.max_retries + 1} attempts")

    def _new_id(self) -> int:
        request_id, self._next_id = self._next_id, self._next_id + 1
        return request_id

    def _lost(self) -> bool:
        return self._chance(self.params.loss_rate)

    def _chance(self, probability: float) -> bool:
        return probability > 0.0 and self.rng.random() < probability

    def _timeout(self) -> float:
        self.stats.timeouts += 1
        return self.params.request_timeout_ns
