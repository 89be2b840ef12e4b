"""The prefill role: runs a request's prompt through the engine as a KV producer.

PrefillTask in → the request's pages are allocated at once, under a lease (one call through
the switch, while the request waits its turn) → it waits in the prefill queue (FCFS, SJF or
LJF, sorted in batches of PrefillSchedBatch) → it is released to the engine when less than
two chunks of prompt tokens are in flight there; the engine, whose token budget per forward
pass is ChunkSize, packs released prompts into ChunkSize chunks in release order (long
prompts split, short ones merged: vLLM's own chunked prefill) and never decodes here (the
prefill step ends at its first token) → its KV connector writes the KV of every prompt
token into the lease's pages as each forward pass makes it, and seals them before the step
ends → the first token goes out at once, whatever the sampling mode, since the decode side
continues from it → the length predictor guesses the output length and the decode
dispatcher picks a decode instance → DecodeTask out, with the lease. Without pages (the
memory nodes could not be reached) the decode side recomputes the prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from actors import metrics
from actors.instances.serving_engine import ServingEngine
from actors.kv.kv_client import KVClient, KVTransferError
from actors.wire import delta_to_wire, lease_pages, load_from_wire, request_from_wire
from cluster.config import SchedulingConfig
from cluster.decode_dispatch import decode_need, make_dispatcher
from cluster.kv_pages import PageLayout, tenant_id
from cluster.kv_transfer import TransferParams, lease_usable, lease_worth_keeping
from cluster.length_predictor import (
    LengthBuckets,
    LengthPredictor,
    held_out_accuracy,
    load_sharegpt,
)
from cluster.placement import InstanceLoad
from cluster.prefill_queue import PrefillQueue
from cluster.recent_ids import RecentIds
from cluster.request import FinishReason, GenerationRequest, TokenDelta
from tetriserve.v1 import kv_pb2, scheduling_pb2

log = logging.getLogger(__name__)


def _event(**kind: object) -> bytes:
    return scheduling_pb2.PrefillEvent(**kind).SerializeToString()


class NoDecodeInstance(RuntimeError):
    """The dispatcher has no decode instance to send the request to."""


class PrefillInstance:
    def __init__(
        self,
        serving: ServingEngine,
        kv: KVClient,
        model_id: str,
        layout: PageLayout,
        scheduling: SchedulingConfig,
        chunk_tokens: int,
    ) -> None:
        self.serving = serving
        self.kv = kv
        self.model_id = model_id
        self.layout = layout
        self.chunk_tokens = chunk_tokens
        self.heavy_decode_tokens = scheduling.heavy_decode_tokens
        self.lease_ttl_s = scheduling.kv_lease_ttl_s
        self.queue = PrefillQueue(scheduling.prefill_policy, scheduling.prefill_sched_batch)
        self.released_tokens = 0
        self._turns: dict[str, asyncio.Event] = {}
        buckets = LengthBuckets(scheduling.length_granularity, scheduling.length_buckets)
        self.predictor = LengthPredictor(buckets, seed=scheduling.seed)
        self._learning = threading.Lock()
        if scheduling.length_train_file is not None:
            self.train_predictor(scheduling.length_train_file)
        self.dispatcher = make_dispatcher(scheduling.dispatcher, seed=scheduling.seed)
        self.decode_loads: dict[str, InstanceLoad] = {}
        # What `abort` gives back for an owner that lets its request go. Request id ->
        # (the lease being taken, tenant) for requests in this instance whose lease was not
        # handed over yet; -> (lease id, tenant) of the DecodeTasks sent; and the requests
        # let go before either. Forgotten leases expire on their memory nodes.
        self._taking: dict[str, tuple[asyncio.Future, int]] = {}
        self._handed_over: RecentIds[tuple[str, int]] = RecentIds()
        self._aborted: RecentIds[bool] = RecentIds()

    def train_predictor(self, path: Path) -> dict[str, float]:
        """Fits the length predictor on a ShareGPT-format file; returns held-out accuracy."""
        samples = load_sharegpt(path, self.serving.engine.tokenize)
        figures = held_out_accuracy(self.predictor, samples)
        log.info("length predictor trained on %s: %s", path, figures)
        return figures

    def set_decode_loads(self, reports: list[bytes]) -> None:
        """The cluster monitor's broadcast of decode-instance load."""
        loads = [load_from_wire(scheduling_pb2.LoadReport.FromString(r)) for r in reports]
        self.decode_loads = {load.instance_id: load for load in loads}

    def load(self) -> InstanceLoad:
        return self.serving.load(waiting_outside=len(self.queue))

    async def prefill(self, task_bytes: bytes) -> AsyncIterator[bytes]:
        """PrefillEvent messages: started, the first token as soon as the engine sampled it
        (finished only when it ends the request), then the DecodeTask with its lease."""
        task = scheduling_pb2.PrefillTask.FromString(task_bytes)
        request = request_from_wire(task.request)
        prompt = list(request.prompt_token_ids)
        tenant = tenant_id(self.model_id, request.adapter_key)
        capability = task.decision.kv_capability
        self.kv.present(tenant, capability)
        leasing = self._start_lease(request, tenant, prompt)
        try:
            await self._wait_turn(request.request_id, len(prompt))
            try:
                # Shielded: cancelling this request must not cancel the leasing, whose thread
                # goes on and takes the lease all the same (then given back below).
                lease = await asyncio.shield(leasing)
                if lease.lease_id and not lease_worth_keeping(
                    lease.expires_at_unix_s, time.time(), self.lease_ttl_s
                ):
                    self._give_back(request.request_id)  # it waited long: a fresh lease
                    lease = await asyncio.shield(self._start_lease(request, tenant, prompt))
                if lease.lease_id and not lease_usable(lease.expires_at_unix_s, time.time()):
                    self._give_back(request.request_id)  # too short to write: decode recomputes
                    metrics.kv_failed(
                        self.serving.instance_id,
                        request.request_id,
                        "lease_expired",
                        "too short to write",
                    )
                    lease = kv_pb2.KVLease(request_id=request.request_id)
                yield _event(started=scheduling_pb2.PrefillStarted())
                first = await self._first_step(request, tenant, capability, prompt, lease)
            finally:
                self.released_tokens -= len(prompt)
                self._release_queued()
            # The step stops at one token; the request ends there only at its own limit or
            # when the engine ended it (end of sequence, an error).
            ends = (
                request.sampling.max_tokens == 1 or first.finish_reason is not FinishReason.LENGTH
            )
            shown = first if ends else dataclasses.replace(first, finish_reason=None)
            yield _event(first_token=delta_to_wire(shown))
            decode_task = scheduling_pb2.DecodeTask(
                request=task.request,
                decision=task.decision,
                prompt_token_ids=prompt,
                prefill_output_token_ids=first.token_ids,
            )
            # A lease nobody decodes from goes back here, and so does the lease of a request
            # its owner let go meanwhile.
            if not ends and request.request_id not in self._aborted:
                self._taking.pop(request.request_id, None)  # the lease goes with the task
                self._dispatch(decode_task.decision, request, prompt)
                decode_task.lease.CopyFrom(lease)
                self._handed_over.remember(request.request_id, (lease.lease_id, tenant))
            yield _event(decode_task=decode_task)
        finally:
            self._give_back(request.request_id)

    def _start_lease(
        self, request: GenerationRequest, tenant: int, prompt: list[int]
    ) -> asyncio.Future[kv_pb2.KVLease]:
        """Takes the request's lease on a thread; this instance holds it until it is handed
        over with the DecodeTask or given back."""
        leasing = asyncio.ensure_future(asyncio.to_thread(self._lease, request, tenant, prompt))
        self._taking[request.request_id] = (leasing, tenant)
        return leasing

    def abort(self, request_id: str) -> None:
        """The request's owner let it go before it read its DecodeTask: a lease this instance
        sent goes back now, and so does one still with this instance, whatever its prefill
        call is doing (a cancelled call may not end before it is collected); a lease not yet
        taken goes back instead of being sent."""
        handed = self._handed_over.take(request_id)
        if handed is not None:
            if handed[0]:
                asyncio.get_running_loop().run_in_executor(None, self.release_lease, *handed)
            return
        self._aborted.remember(request_id, True)
        self._give_back(request_id)

    def _give_back(self, request_id: str) -> None:
        """The lease being taken for a request that ended here, or was let go, goes back as
        soon as it is granted; nothing that cancels the request can stop that. Nothing
        happens when this instance no longer holds it (handed over, or given back)."""
        taking = self._taking.pop(request_id, None)
        if taking is None:
            return
        leasing, tenant = taking

        def release(done: asyncio.Future) -> None:
            if done.cancelled() or done.exception() is not None:
                return
            if lease_id := done.result().lease_id:
                loop.run_in_executor(None, self.release_lease, lease_id, tenant)

        loop = asyncio.get_running_loop()
        leasing.add_done_callback(release)

    def release_lease(self, lease_id: str, tenant: int) -> None:
        """A lease of `tenant` that the request's owner no longer needs; a lease that cannot
        be released expires on its memory nodes."""
        with contextlib.suppress(KVTransferError):
            self.kv.release_lease(lease_id, tenant)

    async def observe(self, prompt: list[int], output_tokens: int) -> None:
        """A finished request's true output length: the predictor learns from it.

        Off the event loop (a refit takes a while); one observation at a time."""

        def learn() -> None:
            with self._learning:
                self.predictor.observe(prompt, output_tokens)

        await asyncio.to_thread(learn)

    async def _wait_turn(self, request_id: str, prompt_tokens: int) -> None:
        turn = self._turns[request_id] = asyncio.Event()
        self.queue.push(request_id, prompt_tokens)
        self._release_queued()
        try:
            await turn.wait()
        except asyncio.CancelledError:
            if self.queue.remove(request_id):
                self._turns.pop(request_id, None)
            else:  # released just before the cancellation: give its tokens back
                self.released_tokens -= prompt_tokens
                self._release_queued()
            raise

    def _release_queued(self) -> None:
        """Lets queued requests into the engine, in policy order, while it has room."""
        for queued in self.queue.release(self.released_tokens, self.chunk_tokens):
            self.released_tokens += queued.prompt_tokens
            self._turns.pop(queued.request_id).set()

    async def _first_step(
        self,
        request: GenerationRequest,
        tenant: int,
        capability: str,
        prompt: list[int],
        lease: kv_pb2.KVLease,
    ) -> TokenDelta:
        """The prompt through the engine, up to its first token; the KV of every prompt
        token goes into the lease's pages."""
        pages = lease_pages(lease)
        produce = TransferParams("produce", tenant, len(prompt), pages, lease.nonce, capability)
        spec = request.sampling
        first_step = dataclasses.replace(spec, max_tokens=1, min_tokens=min(spec.min_tokens, 1))
        step_request = dataclasses.replace(request, sampling=first_step)
        first = None
        async for delta in self.serving.generate(step_request, produce.to_kv_transfer_params()):
            first = delta
        assert first is not None
        return first

    def _dispatch(
        self,
        decision: scheduling_pb2.DispatchDecision,
        request: GenerationRequest,
        prompt: list[int],
    ) -> None:
        """Fills in the predicted output length and the decode instance chosen for it."""
        prediction = self.predictor.predict(prompt, request.sampling.max_tokens)
        need = decode_need(len(prompt), prediction.lower_tokens, self.heavy_decode_tokens)
        chosen = self.dispatcher.choose(self.decode_loads, need)
        if chosen is None:
            raise NoDecodeInstance("no decode instance is known to this prefill instance")
        self.decode_loads[chosen].dispatched(need, prediction.lower_tokens)
        decision.decode_instance = chosen
        decision.predicted_decode_bucket = prediction.bucket
        decision.predicted_decode_tokens = prediction.lower_tokens
        decision.heavy_decode = need.heavy
        decision.policy = type(self.dispatcher).__name__

    def _lease(self, request: GenerationRequest, tenant: int, prompt: list[int]) -> kv_pb2.KVLease:
        """Fresh pages for every prompt token, pinned by a new lease; an empty lease when
        the memory nodes cannot be reached (the decode side then recomputes)."""
        lease_id = uuid.uuid4().hex
        count = self.layout.num_pages(len(prompt))
        try:
            lease = self.kv.alloc_pages(
                tenant, count, self.layout.page_bytes, lease_id, self.lease_ttl_s
            )
        except KVTransferError as exc:
            metrics.kv_failed(self.serving.instance_id, request.request_id, "alloc", str(exc))
            return kv_pb2.KVLease(request_id=request.request_id)
        lease.request_id = request.request_id
        lease.num_tokens = len(prompt)
        return lease
