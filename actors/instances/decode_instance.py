"""The decode role: continues a request from the KV its prefill left in memory nodes.

DecodeTask in → decode admission (greedy, reserve-static or reserve-dynamic, over the
predicted output lengths of the decodes already running) holds it until its KV fits → the
engine continues from the prompt and the prefill's first token: its KV connector reads the
KV of every prompt token from the lease's pages, so the engine computes only the first
token's (`GenerationRequest.continued`: fewer tokens left, penalties still counting the
first token) → token ids stream out as GenerateResponse messages → the lease is
released as soon as the KV is in the engine. Counters say how many prompt tokens arrived as
KV rather than being recomputed; the load report says how many running decodes are heavy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from actors import metrics
from actors.instances.serving_engine import ServingEngine
from actors.kv.kv_client import KVClient, KVTransferError
from actors.wire import delta_to_wire, lease_pages, request_from_wire
from cluster.config import SchedulingConfig
from cluster.decode_admission import Candidate, make_admission
from cluster.decode_load import DecodeProgress, decode_load
from cluster.kv_pages import tenant_id
from cluster.kv_transfer import TransferParams, lease_usable
from cluster.placement import InstanceLoad
from cluster.request import TokenDelta, merge_deltas
from tetriserve.v1 import scheduling_pb2


class DecodeInstance:
    def __init__(
        self, serving: ServingEngine, kv: KVClient, model_id: str, scheduling: SchedulingConfig
    ) -> None:
        self.serving = serving
        self.kv = kv
        self.model_id = model_id
        self.admission = make_admission(scheduling.admission)
        self.longest_interval_s = scheduling.stream_interval_ms / 1000
        self.messages_per_s = scheduling.stream_messages_per_s
        self.decoding: dict[str, DecodeProgress] = {}
        self.waiting = 0
        self.waiting_tokens = 0  # predicted decode tokens of the requests admission holds
        self._changed = asyncio.Condition()
        self.counters = {"requests": 0, "kv_tokens_loaded": 0, "kv_pages_leased": 0}

    def capacity_tokens(self) -> int:
        return self.serving.engine.kv_capacity_tokens()

    def load(self) -> InstanceLoad:
        load = self.serving.load(waiting_outside=self.waiting)
        return decode_load(
            load, self.decoding.values(), self.waiting_tokens, self.capacity_tokens()
        )

    async def decode(self, task_bytes: bytes) -> AsyncIterator[bytes]:
        task = scheduling_pb2.DecodeTask.FromString(task_bytes)
        prior = tuple(task.prefill_output_token_ids)
        request = request_from_wire(task.request).continued(prior)
        lease = task.lease
        tenant = tenant_id(self.model_id, request.adapter_key)
        capability = task.decision.kv_capability
        self.kv.present(tenant, capability)
        consume = TransferParams(
            "consume", tenant, lease.num_tokens, lease_pages(lease), lease.nonce, capability
        )
        self.counters["requests"] += 1
        self.counters["kv_pages_leased"] += len(lease.pages)
        released = not lease.lease_id
        try:
            decoding = await self._admit(request.request_id, task)
            if consume.pages and not lease_usable(lease.expires_at_unix_s, time.time()):
                consume = dataclasses.replace(consume, pages=())  # admitted too late: recompute
                metrics.kv_failed(
                    self.serving.instance_id,
                    request.request_id,
                    "lease_expired",
                    "admitted too late",
                )
            steps = self.serving.generate(request, consume.to_kv_transfer_params(), len(prior))
            async for delta in coalesce(steps, self.stream_interval_s):
                decoding.generated += len(delta.token_ids)
                if not released:
                    released = True
                    self.counters["kv_tokens_loaded"] += delta.cached_tokens
                    metrics.KV_TOKENS_LOADED.labels(self.serving.instance_id).inc(
                        delta.cached_tokens
                    )
                    if consume.pages and delta.cached_tokens < consume.num_tokens:
                        missing = f"{delta.cached_tokens} of {consume.num_tokens} tokens arrived"
                        metrics.kv_failed(
                            self.serving.instance_id, request.request_id, "load", missing
                        )
                    asyncio.get_running_loop().run_in_executor(None, self._release, lease, tenant)
                yield delta_to_wire(delta).SerializeToString()
        finally:
            if not released:  # not awaited: a second cancellation cannot stop it
                asyncio.get_running_loop().run_in_executor(None, self._release, lease, tenant)
            await self._finished(request.request_id)

    def stream_interval_s(self) -> float:
        """How long a stream gathers steps into one message: the running streams share
        `messages_per_s`, so a lone stream sends about every step and, under load, each
        waits longer, up to `longest_interval_s`."""
        return min(self.longest_interval_s, len(self.decoding) / self.messages_per_s)

    async def _admit(self, request_id: str, task: scheduling_pb2.DecodeTask) -> DecodeProgress:
        """Waits until the admission policy lets the request into the engine."""
        decoding = DecodeProgress(
            prompt_tokens=len(task.prompt_token_ids),
            predicted_output=task.decision.predicted_decode_tokens,
            heavy=task.decision.heavy_decode,
        )
        candidate = Candidate(request_id, decoding.prompt_tokens, decoding.predicted_output)

        def fits() -> bool:
            running = [d.view(rid) for rid, d in self.decoding.items()]
            return self.admission.admit(candidate, running, self.capacity_tokens())

        async with self._changed:
            self.waiting += 1
            self.waiting_tokens += decoding.work_left
            try:
                await self._changed.wait_for(fits)
            finally:
                self.waiting -= 1
                self.waiting_tokens -= decoding.work_left
            self.decoding[request_id] = decoding
        return decoding

    async def _finished(self, request_id: str) -> None:
        async with self._changed:
            self.decoding.pop(request_id, None)
            self._changed.notify_all()

    def _release(self, lease: Any, tenant: int) -> None:
        # On failure the memory nodes free the pages when the lease expires.
        with contextlib.suppress(KVTransferError):
            self.kv.release_lease(lease.lease_id, tenant)


async def coalesce(
    steps: AsyncIterator[TokenDelta], interval_s: Callable[[], float]
) -> AsyncIterator[TokenDelta]:
    """The first delta alone and at once, then whatever the engine made within `interval_s()`
    of each batch's first delta as one delta: fewer messages on the way to the client (each
    costs far more than a decode step of a small model); a finished delta ends the wait."""
    queue: asyncio.Queue[TokenDelta | None] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for delta in steps:
                queue.put_nowait(delta)
        finally:
            queue.put_nowait(None)

    pumping = asyncio.get_running_loop().create_task(pump())
    try:
        first = await queue.get()
        done = first is None or first.finished
        if first is not None:
            yield first
        while not done:
            batch, done = await _batch(queue, interval_s())
            if batch:
                yield merge_deltas(batch)
        await pumping  # the engine's exception, if its stream ended with one
    finally:
        pumping.cancel()


async def _batch(
    queue: asyncio.Queue[TokenDelta | None], interval_s: float
) -> tuple[list[TokenDelta], bool]:
    """The next delta, those already waiting and those that follow within `interval_s`;
    True when the stream ended."""
    loop = asyncio.get_running_loop()
    item = await queue.get()
    if item is None:
        return [], True
    batch, deadline = [item], loop.time() + interval_s
    while not item.finished:
        if queue.empty():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return batch, False
            try:
                item = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                return batch, False
        else:
            item = queue.get_nowait()
        if item is None:
            return batch, True
        batch.append(item)
    return batch, True
