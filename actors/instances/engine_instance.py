"""An instance that runs whole requests, prefill and decode, on one engine.

It is the simplest thing the front door can send work to: the embedded default before
disaggregation is switched on, and the colocated baseline the benchmarks compare against.
Wire messages in, wire messages out; build it directly in tests, or with `ray.remote`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from actors.adapters.adapter_store import UnknownAdapter
from actors.adapters.host_cache import AdapterHostCache
from actors.engine.adapter import EngineAdapter, UnknownAdapterError
from actors.model_shipping import ShippedModel, local_dir
from actors.wire import delta_to_wire, request_from_wire
from cluster.config import EngineConfig
from cluster.request import FinishReason, TokenDelta
from tetriserve.v1 import generate_pb2

INSTANCE_ID = "engine-0"


class EngineInstance:
    def __init__(
        self, config: EngineConfig, adapter_store: Any, model: ShippedModel | None = None
    ) -> None:
        """`adapter_store`: the LoRAAdapterStore's handle; `model`: where the checkpoint
        comes from when this node may not have it (the path in `config` is then the
        builder's)."""
        if model is not None:
            config = config.model_copy(update={"model_dir": local_dir(model)})
        self.engine = EngineAdapter(config)
        self.adapters = AdapterHostCache(adapter_store, self.engine, INSTANCE_ID)

    async def generate(self, request_bytes: bytes) -> AsyncIterator[bytes]:
        """Streams serialized GenerateResponse messages for one serialized GenerateRequest."""
        request = request_from_wire(generate_pb2.GenerateRequest.FromString(request_bytes))
        try:
            async with self.adapters.holding(request):
                async for delta in self.engine.generate(request):
                    yield delta_to_wire(delta).SerializeToString()
        except (UnknownAdapterError, UnknownAdapter) as exc:
            failed = TokenDelta(
                request.request_id, "", (), FinishReason.ERROR, error=f"unknown adapter {exc}"
            )
            yield delta_to_wire(failed).SerializeToString()

    async def abort(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    def ready(self) -> bool:
        return True
