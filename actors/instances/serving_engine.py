"""What prefill and decode instances share: an engine, adapters fetched on demand, load.

`ServingEngine.generate` is `EngineAdapter.generate` plus what an instance needs: the
request's adapter held in the host tier (actors/adapters/host_cache.py, fetched from the
LoRAAdapterStore the first time), and the requests in flight counted for load reports,
with the seconds the engine had work (`busy_seconds`, the instance-seconds a benchmark
charges).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from actors import metrics
from actors.adapters.host_cache import AdapterHostCache
from actors.engine.adapter import EngineAdapter
from actors.engine.core_share import parse_cores
from cluster.config import EngineConfig
from cluster.placement import InstanceLoad
from cluster.request import GenerationRequest, TokenDelta


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
        self.adapters = AdapterHostCache(adapter_store, self.engine, instance_id)
        self.running = 0
        self._busy_s = 0.0
        self._busy_since = 0.0

    async def generate(
        self,
        request: GenerationRequest,
        kv_transfer_params: dict | None = None,
        prior_output: int = 0,
    ) -> AsyncIterator[TokenDelta]:
        if self.running == 0:
            self._busy_since = time.monotonic()
        self.running += 1
        try:
            async with self.adapters.holding(request):
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
