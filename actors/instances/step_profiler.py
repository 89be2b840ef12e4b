"""What a live engine's steps cost, for the simulator's cost models (`tetriserve sim profile`).

A short-lived actor with one engine, as ChunkSize profiling starts it (the same prompts,
fresh random tokens at every probe, so the prefix cache never helps): a prefill pass of
some tokens is timed as ChunkSize profiling times it, and a decode step at some batch size
and context length is timed from `batch` greedy requests sent together, each with a prompt
of `context` tokens: between the moment the last of them has its first token and the moment
the first of them ends, every step decodes them all and computes no prompt, and the step is
the median gap between two of a request's tokens in that window. A LoRA probe gives each
sequence an adapter of the model's own, by rank (`adapters/rR`), to time decode steps over
batches of mixed ranks (`tetriserve sim lora-profile`).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
import uuid
from collections.abc import Sequence

from actors.instances.chunk_profiler import REPEATS, ChunkProfiler
from actors.model_shipping import ShippedModel, local_dir
from cluster.checkpoint import inspect_checkpoint
from cluster.config import EngineConfig
from cluster.request import GenerationRequest, SamplingSpec


def probe_tokens(batch: int, context: int, steps: int, max_batched_tokens: int) -> int:
    """Output tokens per request of a decode probe: while the batch's prompts are prefilled
    (one pass per `max_batched_tokens` prompt tokens), the first requests already decode;
    `steps` more follow with all of them decoding."""
    prefill_passes = -(-batch * context // max_batched_tokens)
    return steps + prefill_passes + 1


class StepProfiler(ChunkProfiler):
    def __init__(self, config: EngineConfig, vocab_size: int, model: ShippedModel) -> None:
        super().__init__(config, vocab_size, model)
        adapters = inspect_checkpoint(local_dir(model)).adapters.values()
        # rank → (name, version) of the first adapter of that rank; its version is its LoRA id
        self._adapter_of_rank: dict[int, tuple[str, int]] = {}
        for lora_id, adapter in enumerate(sorted(adapters, key=lambda a: a.name), start=1):
            self.engine.add_adapter(f"{adapter.name}@{lora_id}", lora_id, adapter.path)
            self._adapter_of_rank.setdefault(adapter.rank, (adapter.name, lora_id))

    def adapter_ranks(self) -> list[int]:
        """The ranks a LoRA probe can give its sequences."""
        return sorted(self._adapter_of_rank)

    async def prefill_seconds(self, tokens: int) -> float:
        """Median seconds of a prefill pass of `tokens` prompt tokens."""
        return statistics.median([await self._seconds(tokens) for _ in range(REPEATS)])

    async def decode_step(
        self, batch: int, context: int, steps: int, ranks: Sequence[int] = ()
    ) -> tuple[float, float]:
        """(median seconds, mean context tokens per sequence) of a decode step of `batch`
        sequences with prompts of `context` tokens, over at least `steps` steps in which
        all of them decode and no prompt is computed. `ranks`: one per sequence, the rank
        of its adapter (0: none); `batch` is then their number."""
        ranks = tuple(ranks) or (0,) * batch
        tokens = probe_tokens(len(ranks), context, steps, self.max_batched_tokens)
        stamps = await asyncio.gather(*(self._token_times(context, tokens, rank) for rank in ranks))
        all_decoding = max(times[0] for times in stamps)  # every prompt prefilled
        first_done = min(times[-1] for times in stamps)
        gaps = [
            (later - earlier, context + made)
            for times in stamps
            for made, (earlier, later) in enumerate(itertools.pairwise(times), start=1)
            if all_decoding <= earlier and later <= first_done
        ]
        if not gaps:
            raise RuntimeError(f"no step of {batch} sequences decoding together was seen")
        return (
            statistics.median(gap for gap, _ in gaps),
            statistics.fmean(held for _, held in gaps),
        )

    async def _token_times(self, context: int, tokens: int, rank: int = 0) -> list[float]:
        """When each step's output of one greedy request of a `context`-token prompt came,
        under the model's adapter of `rank` (0: none)."""
        prompt = tuple(self.rng.randrange(3, self.vocab_size) for _ in range(context))
        adapter = {}
        if rank:
            name, version = self._adapter_of_rank[rank]
            adapter = {"adapter": name, "adapter_version": version}
        request = GenerationRequest(
            request_id=f"step-probe-{uuid.uuid4().hex}",
            prompt_token_ids=prompt,
            sampling=SamplingSpec(max_tokens=tokens, temperature=0.0, ignore_eos=True),
            **adapter,
        )
        times = []
        async for delta in self.engine.generate(request):
            times.extend([time.perf_counter()] * len(delta.token_ids))
        return times

    @property
    def max_batched_tokens(self) -> int:
        return max(self.sizes)

    def kv_capacity_tokens(self) -> int:
        return self.engine.kv_capacity_tokens()

    def ping(self) -> None:
        """Nothing: a round trip to this actor, timed by the caller."""
