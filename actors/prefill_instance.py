"""PrefillInstance: runs a request's prompt through its engine as a KV producer.

PrefillTask in → the engine computes the prompt (one output token), its KV connector writes
the KV of all prompt tokens but the last into memory-node pages → the pages that arrived
whole are found by key and pinned under a lease → the decode dispatcher picks a decode
instance → DecodeTask out, carrying the lease. A page that did not arrive ends the lease
early; the decode side then recomputes from there, so a lost page costs time, never text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

from actors.kv_client import KVClient, KVTransferError
from actors.serving_engine import ServingEngine
from actors.wire import (
    delta_to_wire,
    handle_to_wire,
    load_from_wire,
    load_to_wire,
    request_from_wire,
)
from cluster.config import EngineConfig
from cluster.kv_pages import PageHandle, PageLayout, page_keys, tenant_id
from cluster.kv_transfer import TransferParams
from cluster.placement import InstanceLoad, LeastLoaded, Placement
from cluster.request import GenerationRequest
from tetriserve.v1 import kv_pb2, scheduling_pb2

LEASE_TTL_S = 30.0


class NoDecodeInstance(RuntimeError):
    """The dispatcher has no decode instance to send the request to."""


class PrefillInstance:
    def __init__(
        self,
        instance_id: str,
        config: EngineConfig,
        model_id: str,
        switch_address: str,
        layout: PageLayout,
        adapter_store: Any = None,
        metrics_port: int | None = None,
        dispatcher: Placement | None = None,
    ) -> None:
        self.serving = ServingEngine(instance_id, config, adapter_store, metrics_port)
        self.model_id = model_id
        self.layout = layout
        self.kv = KVClient(switch_address)
        self.dispatcher = dispatcher or LeastLoaded()
        self.decode_loads: dict[str, InstanceLoad] = {}

    def set_decode_loads(self, reports: list[bytes]) -> None:
        """The cluster monitor's broadcast of decode-instance load."""
        loads = [load_from_wire(scheduling_pb2.LoadReport.FromString(r)) for r in reports]
        self.decode_loads = {load.instance_id: load for load in loads}

    def load_report(self) -> bytes:
        load = self.serving.load()
        return load_to_wire(load, scheduling_pb2.INSTANCE_ROLE_PREFILL).SerializeToString()

    async def prefill(self, task_bytes: bytes) -> bytes:
        task = scheduling_pb2.PrefillTask.FromString(task_bytes)
        request = request_from_wire(task.request)
        prompt = list(request.prompt_token_ids)
        tenant = tenant_id(self.model_id, request.adapter)
        produce = TransferParams(
            "produce", tenant, len(prompt) - 1, self.model_id, request.adapter or ""
        )
        first_step = dataclasses.replace(request.sampling, max_tokens=1)
        step_request = dataclasses.replace(request, sampling=first_step)
        first = None
        async for delta in self.serving.generate(step_request, produce.to_kv_transfer_params()):
            first = delta
        assert first is not None
        decode_task = scheduling_pb2.DecodeTask(
            request=task.request,
            decision=task.decision,
            prompt_token_ids=prompt,
            first_token_ids=list(first.token_ids),
            first=delta_to_wire(first),
        )
        if request.sampling.max_tokens > 1:  # otherwise the first step was the whole answer
            decode_task.decision.decode_instance = self._dispatch()
            lease = await asyncio.to_thread(self._lease, request, tenant, prompt)
            decode_task.lease.CopyFrom(lease)
        return decode_task.SerializeToString()

    def _dispatch(self) -> str:
        chosen = self.dispatcher.choose(self.decode_loads)
        if chosen is None:
            raise NoDecodeInstance("no decode instance is known to this prefill instance")
        self.decode_loads[chosen].queued += 1  # until the next broadcast corrects it
        return chosen

    def _lease(self, request: GenerationRequest, tenant: int, prompt: list[int]) -> kv_pb2.KVLease:
        """Pins the pages that arrived whole; stops at the first one that did not.

        Every page is written whole and says in its trailer how many tokens it holds, so
        the decode side checks that a page it reads is complete enough for its needs."""
        count = len(prompt) - 1
        keys = page_keys(self.model_id, request.adapter, prompt[:count], self.layout.block_size)
        lease = kv_pb2.KVLease(lease_id=uuid.uuid4().hex, request_id=request.request_id)
        try:
            handles = self.kv.lookup(tenant, keys)
        except KVTransferError:
            return lease
        pages: list[PageHandle] = []
        for handle in handles:
            if handle is None or handle.length < self.layout.page_bytes:
                break  # this page, and so the ones after it, did not arrive whole
            pages.append(handle)
        if not pages:
            return lease
        try:
            expires = self.kv.grant_lease(lease.lease_id, tenant, pages, LEASE_TTL_S)
        except KVTransferError:
            return lease
        lease.expires_at_unix_s = expires
        lease.num_tokens = min(count, len(pages) * self.layout.block_size)
        lease.pages.extend(handle_to_wire(page) for page in pages)
        return lease
