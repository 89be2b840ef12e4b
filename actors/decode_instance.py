"""DecodeInstance: continues a request from the KV its prefill left in memory nodes.

DecodeTask in → the engine is asked to consume the lease's pages (its KV connector reads
them by handle and computes only the last prompt token) → tokens stream out as
GenerateResponse messages → the lease is released as soon as the KV is in the engine.
Counters say how many prompt tokens arrived as KV rather than being recomputed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from actors import metrics
from actors.kv_client import KVClient, KVTransferError
from actors.serving_engine import ServingEngine
from actors.wire import delta_to_wire, handle_from_wire, load_to_wire, request_from_wire
from cluster.config import EngineConfig
from cluster.kv_pages import tenant_id
from cluster.kv_transfer import TransferParams
from tetriserve.v1 import scheduling_pb2


class DecodeInstance:
    def __init__(
        self,
        instance_id: str,
        config: EngineConfig,
        model_id: str,
        switch_address: str,
        adapter_store: Any = None,
        metrics_port: int | None = None,
    ) -> None:
        self.serving = ServingEngine(instance_id, config, adapter_store, metrics_port)
        self.model_id = model_id
        self.kv = KVClient(switch_address)
        self.counters = {"requests": 0, "kv_tokens_loaded": 0, "kv_pages_leased": 0}

    def load_report(self) -> bytes:
        load = self.serving.load()
        return load_to_wire(load, scheduling_pb2.INSTANCE_ROLE_DECODE).SerializeToString()

    def stats(self) -> dict[str, int]:
        return dict(self.counters)

    async def decode(self, task_bytes: bytes) -> AsyncIterator[bytes]:
        task = scheduling_pb2.DecodeTask.FromString(task_bytes)
        request = request_from_wire(task.request)
        lease = task.lease
        consume = TransferParams(
            "consume",
            tenant_id(self.model_id, request.adapter),
            lease.num_tokens,
            pages=tuple(h for h in map(handle_from_wire, lease.pages) if h is not None),
        )
        self.counters["requests"] += 1
        self.counters["kv_pages_leased"] += len(lease.pages)
        released = not lease.lease_id
        try:
            async for delta in self.serving.generate(request, consume.to_kv_transfer_params()):
                if not released:
                    released = True
                    self.counters["kv_tokens_loaded"] += delta.cached_tokens
                    metrics.KV_TOKENS_LOADED.labels(self.serving.instance_id).inc(
                        delta.cached_tokens
                    )
                    asyncio.get_running_loop().run_in_executor(None, self._release, lease)
                yield delta_to_wire(delta).SerializeToString()
        finally:
            if not released:
                await asyncio.to_thread(self._release, lease)

    def _release(self, lease: Any) -> None:
        # On failure the memory nodes free the pages when the lease expires.
        with contextlib.suppress(KVTransferError):
            self.kv.release_lease(lease.lease_id)
