"""Injected faults on the KV path: KV RPCs dropped or delayed by a gRPC client interceptor.

Request path: engine or serving instance -> KVClient -> [this interceptor] -> gRPC ->
SuperNICSwitch -> MemoryNode. Off unless the environment a KVClient is made in has
`TETRISERVE_KV_FAULTS`, a JSON object such as

    {"drop_every": 3, "delay_ms": 20, "methods": ["AllocPages", "ReleaseLease"]}

Every `drop_every`-th call of each method named (every method, when `methods` is empty)
fails with UNAVAILABLE before it leaves the process, as a call to an unreachable switch
does; every call named waits `delay_ms` first. The counting is per method and per client,
so a run is repeatable. Set it in the environment a cluster starts with (the fault suite,
tests/faults/, does) to see what the path does when the network misbehaves.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt

FAULTS_ENV = "TETRISERVE_KV_FAULTS"


class KVFaults(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    drop_every: NonNegativeInt = 0  # 0: drop nothing
    delay_ms: NonNegativeFloat = 0.0
    methods: tuple[str, ...] = Field(default=())  # e.g. "ReadPages"; empty: every method

    def applies_to(self, method: str) -> bool:
        return not self.methods or method in self.methods


class InjectedDrop(grpc.RpcError):
    """A KV call dropped on purpose; it reads as an unreachable peer."""

    def __init__(self, method: str) -> None:
        super().__init__(f"{method} dropped by fault injection")
        self.method = method

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return f"{self.method} dropped by fault injection ({FAULTS_ENV})"


class FaultInterceptor(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, faults: KVFaults) -> None:
        self.faults = faults
        self._calls: defaultdict[str, Iterator[int]] = defaultdict(lambda: itertools.count(1))

    def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], client_call_details: Any, request: Any
    ) -> Any:
        method = client_call_details.method.rsplit("/", 1)[-1]
        if self.faults.applies_to(method):
            if self.faults.delay_ms:
                time.sleep(self.faults.delay_ms / 1000)
            call = next(self._calls[method])
            if self.faults.drop_every and call % self.faults.drop_every == 0:
                raise InjectedDrop(method)
        return continuation(client_call_details, request)


def faults_from_environment() -> KVFaults | None:
    spec = os.environ.get(FAULTS_ENV)
    return KVFaults.model_validate_json(spec) if spec else None


def with_faults(channel: grpc.Channel) -> grpc.Channel:
    """`channel`, behind the injected faults the environment asks for (if any)."""
    faults = faults_from_environment()
    return grpc.intercept_channel(channel, FaultInterceptor(faults)) if faults else channel
