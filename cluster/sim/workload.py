"""The requests a simulation serves: when each reaches the ingress, its prompt and output.

On the live path these are what clients send to the Serve ingress. Arrivals are Poisson
at a given rate (or all at once), drawn from a seeded generator. The five TetriInfer
workloads (LPLD, LPHD, HPLD, HPHD and Mixed, a quarter of each kind) are defined by prompt
and output length ranges: a prefill is heavy when its prompt exceeds ChunkSize, a decode
when its output exceeds the heavy-decode threshold.

The workloads, their prompt ranges and the kind of each request come from
`cluster/workload_mix.py`, as the live benchmark's do: light prompts 16..ChunkSize tokens,
heavy ones up to 3 x ChunkSize (within max_model_len less the longest output less 8).
`BENCH_DECODE` holds the benchmark's output ranges; `TETRIINFER_DECODE` is the paper's split
(heavy decode above 128 output tokens).

Each request also carries a prompt family (0 and 1 light decode, 2 and 3 heavy, as the
benchmark's families), from which `prompt_token_ids` makes token ids a learned length
predictor can tell apart.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from cluster.workload_mix import (
    HEAVY_DECODE,
    KINDS,
    LIGHT_DECODE,
    Range,
    heavy_decode_threshold,
    kinds_for,
    prompt_ranges,
    split,
)

FAMILIES = 4
FAMILY_VOCABULARY = 32  # token ids each family's prompts draw from


@dataclass(frozen=True, slots=True)
class DecodeRanges:
    """Output tokens of light- and heavy-decode requests (inclusive ranges)."""

    light: Range
    heavy: Range

    @property
    def heavy_threshold(self) -> int:
        """Outputs above this are heavy: the middle of the gap between the ranges."""
        return heavy_decode_threshold(self.light, self.heavy)


BENCH_DECODE = DecodeRanges(light=LIGHT_DECODE, heavy=HEAVY_DECODE)
TETRIINFER_DECODE = DecodeRanges(light=(8, 128), heavy=(129, 512))


@dataclass(frozen=True, slots=True)
class WorkloadShape:
    light_prompt: Range
    heavy_prompt: Range
    decode: DecodeRanges


def workload_shape(chunk_tokens: int, max_model_len: int, decode: DecodeRanges) -> WorkloadShape:
    prompts = prompt_ranges(chunk_tokens, max_model_len, longest_output=decode.heavy[1])
    return WorkloadShape(light_prompt=prompts.light, heavy_prompt=prompts.heavy, decode=decode)


@dataclass(slots=True)
class SimRequest:
    """One request: what it asks for, and (filled in by the simulation) when it was served."""

    index: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int  # also its max_tokens: the request runs to its length
    family: int
    first_token_s: float = math.nan
    finished_s: float = math.nan

    @property
    def request_id(self) -> str:
        return f"r{self.index}"

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def jct_s(self) -> float:
        return self.finished_s - self.arrival_s

    def prompt_token_ids(self) -> list[int]:
        """Token ids of the prompt, drawn from its family's vocabulary (seeded by index)."""
        rng = random.Random(self.index)
        first = self.family * FAMILY_VOCABULARY
        return [first + rng.randrange(FAMILY_VOCABULARY) for _ in range(self.prompt_tokens)]


def make_requests(
    workload: str,
    count: int,
    shape: WorkloadShape,
    rate_per_s: float = math.inf,
    seed: int = 0,
) -> list[SimRequest]:
    """`count` requests of `workload`, in arrival order; the same for the same arguments.

    `rate_per_s`: Poisson arrivals at that mean rate; infinite sends them all at time 0.
    Each kind's two families take turns and split the kind's output range between them.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if rate_per_s <= 0:
        raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
    rng = random.Random(seed)
    light_outputs = split(shape.decode.light, 2)
    heavy_outputs = split(shape.decode.heavy, 2)
    seen = dict.fromkeys(KINDS, 0)
    clock = 0.0
    requests = []
    for index, kind in enumerate(kinds_for(workload, count, rng)):
        turn = seen[kind] % 2
        seen[kind] += 1
        heavy_decode = kind.endswith("HD")
        family = 2 * heavy_decode + turn
        outputs = (heavy_outputs if heavy_decode else light_outputs)[turn]
        prompts = shape.heavy_prompt if kind.startswith("HP") else shape.light_prompt
        if not math.isinf(rate_per_s):
            clock += rng.expovariate(rate_per_s)
        requests.append(
            SimRequest(
                index=index,
                arrival_s=clock,
                prompt_tokens=rng.randint(*prompts),
                output_tokens=rng.randint(*outputs),
                family=family,
            )
        )
    return requests
