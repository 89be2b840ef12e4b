"""ChunkSize by profiling: prefill throughput versus tokens per forward pass, and its knee.

Runs before the prefill instances start when the deployment names no ChunkSize. The
profiler is a short-lived actor on the prefill's cores, on a node the prefill role may run
on: an engine whose token budget is the
largest probe, one prompt per probe size (fresh random tokens each time, so the prefix cache
never helps), a few timings per size with the median kept. `cluster.chunking.find_knee`
picks the smallest size that reaches 90% of the best throughput. The result is cached per
model, device, cores and engine settings under tetriserve's home, so later starts skip it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import ray

from actors.engine.adapter import EngineAdapter
from actors.model_shipping import ShippedModel, local_dir
from cluster.chunking import find_knee, probe_sizes
from cluster.config import EngineConfig
from cluster.model_factory import tetriserve_home
from cluster.request import GenerationRequest, SamplingSpec

REPEATS = 3


class ChunkProfiler:
    def __init__(self, config: EngineConfig, vocab_size: int, model: ShippedModel) -> None:
        self.sizes = probe_sizes(config.max_model_len - 1)
        update = {
            "max_num_batched_tokens": max(self.sizes),
            "kv_transfer": None,
            "model_dir": local_dir(model),
        }
        self.engine = EngineAdapter(config.model_copy(update=update))
        self.rng = random.Random(0)
        self.vocab_size = vocab_size

    async def _seconds(self, tokens: int) -> float:
        prompt = tuple(self.rng.randrange(3, self.vocab_size) for _ in range(tokens))
        request = GenerationRequest(
            request_id=f"chunk-probe-{uuid.uuid4().hex}",
            prompt_token_ids=prompt,
            sampling=SamplingSpec(max_tokens=1, temperature=0.0),
        )
        started = time.perf_counter()
        async for _ in self.engine.generate(request):
            pass
        return time.perf_counter() - started

    async def profile(self) -> list[tuple[int, float]]:
        """(tokens per forward pass, median seconds per pass) for every probe size."""
        await self._seconds(self.sizes[0])  # warm-up
        samples = []
        for tokens in self.sizes:
            timings = [await self._seconds(tokens) for _ in range(REPEATS)]
            samples.append((tokens, statistics.median(timings)))
        return samples

    def shutdown(self) -> None:
        self.engine.shutdown()


def _cache_path(config: EngineConfig) -> Path:
    key = json.dumps(
        [str(config.model_dir), config.device, config.cpu_cores, config.block_size,
         config.max_model_len, config.enforce_eager],
    )  # fmt: skip
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return tetriserve_home() / "chunk_profiles" / f"{digest}.json"


def chunk_tokens_for(
    config: EngineConfig, vocab_size: int, model: ShippedModel, placement: dict[str, Any]
) -> int:
    """ChunkSize for prefill engines built from `config`: cached, or profiled now on a node
    that `placement` (the prefill role's Ray options) admits."""
    path = _cache_path(config)
    if path.exists():
        return int(json.loads(path.read_text())["chunk_tokens"])
    profiler = ray.remote(ChunkProfiler).options(**placement).remote(config, vocab_size, model)
    try:
        samples = ray.get(profiler.profile.remote())
    finally:
        with contextlib.suppress(ray.exceptions.RayError):  # its engine's processes end too
            ray.get(profiler.shutdown.remote())
        ray.kill(profiler)
    chunk = find_knee(samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = [{"tokens": t, "seconds": s, "tokens_per_s": t / s} for t, s in samples]
    path.write_text(json.dumps({"chunk_tokens": chunk, "samples": figures}, indent=2) + "\n")
    return chunk
