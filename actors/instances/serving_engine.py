"""What prefill and decode instances share: an engine, adapters fetched on demand, load.

`ServingEngine.generate` is `EngineAdapter.generate` plus what an instance needs: the first
request for an adapter the engine lacks fetches it from the LoRAAdapterStore, and the
requests in flight are counted for load reports, with the seconds the engine had work
(`busy_seconds`, the instance-seconds a benchmark charges).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from actors import metrics
from actors.adapters.adapter_store import materialize
from actors.engine.adapter import EngineAdapter
from actors.engine.core_share import parse_cores
from cluster.config import EngineConfig
from cluster.placement import InstanceLoad
from cluster.request import GenerationRequest, TokenDelta
from tetriserve.v1 import adapters_pb2


class ServingEngine:
    def __init__(
        self,
        instance_id: str,
        config: EngineConfig,
        adapter_store: Any = None,
        metrics_port: int | None = None,
    ) -> None:
        self.metrics_target = metrics.expose(metrics_port)
        self.instance_id = instance_id
        metrics.start_instance_series(instance_id)
        self.engine = EngineAdapter(config)
        self._adapter_store = adapter_store
        self._adapter_root = Path(tempfile.mkdtemp(prefix=f"tetriserve-{instance_id}-"))
        self._adapter_locks: dict[str, asyncio.Lock] = {}
        self.running = 0
        self._busy_s = 0.0
        self._busy_since = 0.0

    async def _ensure_adapter(self, name: str | None) -> None:
        """The adapter's files on this instance's machine (the `host` tier), fetched from
        the adapter store on first use."""
        if name is None or self._adapter_store is None:
            return
        if name not in self.engine.adapters:
            lock = self._adapter_locks.setdefault(name, asyncio.Lock())
            async with lock:
                if name not in self.engine.adapters:
                    await self._load_adapter(name)
                    return
        metrics.ADAPTER_HITS.labels(self.instance_id, "host").inc()

    async def _load_adapter(self, name: str) -> None:
        started = time.monotonic()
        request = adapters_pb2.FetchAdapterRequest(name=name).SerializeToString()
        reply = await self._adapter_store.fetch.remote(request)
        self.engine.add_adapter(name, materialize(reply, self._adapter_root))
        metrics.ADAPTER_LOADS.labels(self.instance_id, "host").inc()
        metrics.ADAPTER_LOAD_SECONDS.labels(self.instance_id, "host").observe(
            time.monotonic() - started
        )

    async def generate(
        self,
        request: GenerationRequest,
        kv_transfer_params: dict | None = None,
        prior_output: int = 0,
    ) -> AsyncIterator[TokenDelta]:
        await self._ensure_adapter(request.adapter)
        if self.running == 0:
            self._busy_since = time.monotonic()
        self.running += 1
        try:
            async for delta in self.engine.generate(request, kv_transfer_params, prior_output):
                yield delta
        finally:
            self.running -= 1
            if self.running == 0:
                self._busy_s += time.monotonic() - self._busy_since

    @property
    def cores(self) -> int:
        """CPU cores the engine may run on: its own and those it borrows (1 for a GPU)."""
        config = self.engine.config
        own = parse_cores(config.cpu_cores or "")
        return max(len(own) + len(parse_cores(config.borrowed_cores or "")), 1)

    @property
    def busy_seconds(self) -> float:
        """Seconds so far during which the engine had at least one request."""
        ongoing = time.monotonic() - self._busy_since if self.running else 0.0
        return self._busy_s + ongoing

    def load(self, waiting_outside: int = 0) -> InstanceLoad:
        """This instance's load, also published as its queue-depth gauges.

        `waiting_outside`: requests the instance holds back before its engine (a prefill
        queue, decode admission); they count as queued."""
        stats = self.engine.stats()
        queued = max(stats.unfinished_requests - self.running, 0) + waiting_outside
        metrics.RUNNING.labels(self.instance_id).set(self.running)
        metrics.WAITING.labels(self.instance_id).set(queued)
        return InstanceLoad(self.instance_id, queued=queued, running=self.running)
