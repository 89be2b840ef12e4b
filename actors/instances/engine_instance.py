"""An instance that runs whole requests, prefill and decode, on one engine.

It is the simplest thing the front door can send work to: the embedded default before
disaggregation is switched on, and the colocated baseline the benchmarks compare against.
Wire messages in, wire messages out; build it directly in tests, or with `ray.remote`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from actors.engine.adapter import EngineAdapter, UnknownAdapterError
from actors.model_shipping import ShippedModel, local_dir, rebase
from actors.wire import delta_to_wire, request_from_wire
from cluster.config import EngineConfig
from cluster.request import FinishReason, TokenDelta
from tetriserve.v1 import generate_pb2


class EngineInstance:
    def __init__(
        self,
        config: EngineConfig,
        adapters: Mapping[str, Path] | None = None,
        model: ShippedModel | None = None,
    ) -> None:
        """`model`: where the checkpoint comes from when this node may not have it (paths in
        `config` and `adapters` are then the builder's, found again on this node)."""
        if model is not None:
            config = config.model_copy(update={"model_dir": local_dir(model)})
            adapters = {name: rebase(path, model) for name, path in (adapters or {}).items()}
        self.engine = EngineAdapter(config, adapters)

    async def generate(self, request_bytes: bytes) -> AsyncIterator[bytes]:
        """Streams serialized GenerateResponse messages for one serialized GenerateRequest."""
        request = request_from_wire(generate_pb2.GenerateRequest.FromString(request_bytes))
        try:
            async for delta in self.engine.generate(request):
                yield delta_to_wire(delta).SerializeToString()
        except UnknownAdapterError as exc:
            failed = TokenDelta(
                request.request_id, "", (), FinishReason.ERROR, error=f"unknown adapter {exc}"
            )
            yield delta_to_wire(failed).SerializeToString()

    async def abort(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    def ready(self) -> bool:
        return True
