"""Rank-aware routing (CaraServe): a LoRA request goes where it adds the least cost, within
the SLO on time per output token.

Cost models, fitted from profiles of the real engine (`fit_decode_model`, which also gives
R²):
- a decode step over a batch of adapters' ranks, padded as BGMV pads every row to the
  batch's largest rank (`a * |batch| * max_rank + b`) or unpadded as MBGMV computes each row
  at its own rank (`a * sum(rank) + b`);
- a prefill pass over a number of prompt tokens (`a * tokens + b`).

For each candidate instance, holding the ranks of its requests and the prompt tokens it has
still to prefill, the request adds `d_prefill / mean_output_tokens + d_decode`: the growth of
its prefill queue spread over the tokens a request makes, and the growth of every decode
step. The cost is infinite where the predicted step with the request would exceed the SLO,
and is weighed by the requests the instance holds (an idle instance costs nothing). The
lowest cost wins; where every instance is over the SLO, the one with the shortest predicted
step. Least-loaded, random and first-fit take the same inputs, for comparison. Pure code:
no Ray, no engine.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

Padding = Literal["padded", "unpadded"]


@dataclass(frozen=True, slots=True)
class DecodeCostModel:
    """Seconds of one decode step over a batch of ranks (rank 0: no adapter)."""

    padding: Padding
    per_unit_s: float  # a
    base_s: float  # b

    def step_s(self, ranks: Sequence[int]) -> float:
        if not ranks:
            return 0.0
        units = len(ranks) * max(ranks) if self.padding == "padded" else sum(ranks)
        return self.per_unit_s * units + self.base_s


@dataclass(frozen=True, slots=True)
class PrefillCostModel:
    """Seconds to prefill a number of prompt tokens."""

    per_token_s: float
    base_s: float

    def pass_s(self, tokens: int) -> float:
        return self.per_token_s * tokens + self.base_s if tokens > 0 else 0.0


def fit_decode_model(
    samples: Sequence[tuple[Sequence[int], float]], padding: Padding
) -> tuple[DecodeCostModel, float]:
    """Least squares over (batch ranks, step seconds) samples; the model and its R²."""
    if len(samples) < 2:
        raise ValueError("need at least two samples to fit a line")
    units = np.array(
        [len(r) * max(r) if padding == "padded" else sum(r) for r, _ in samples], dtype=float
    )
    seconds = np.array([s for _, s in samples], dtype=float)
    design = np.column_stack([units, np.ones_like(units)])
    (slope, intercept), *_ = np.linalg.lstsq(design, seconds, rcond=None)
    predicted = design @ np.array([slope, intercept])
    spread = float(((seconds - seconds.mean()) ** 2).sum())
    r2 = 1.0 - float(((seconds - predicted) ** 2).sum()) / spread if spread > 0 else 1.0
    return DecodeCostModel(padding, float(slope), float(intercept)), r2


@dataclass(frozen=True, slots=True)
class LoraLoad:
    """What an instance holds, as a LoRA router sees it."""

    instance_id: str
    ranks: tuple[int, ...] = ()  # one per request it holds (0: no adapter)
    prefill_tokens: int = 0  # prompt tokens it has still to prefill

    @property
    def requests(self) -> int:
        return len(self.ranks)


@dataclass(frozen=True, slots=True)
class LoraRequest:
    rank: int  # 0: no adapter
    prompt_tokens: int


class LoraRouter(Protocol):
    def choose(self, loads: Mapping[str, LoraLoad], request: LoraRequest) -> str | None: ...


@dataclass(slots=True)
class RankAware:
    """CaraServe's rule over the cost models, against an SLO on the decode step."""

    decode: DecodeCostModel
    prefill: PrefillCostModel
    slo_step_s: float
    mean_output_tokens: float = 64.0

    def cost(self, load: LoraLoad, request: LoraRequest) -> float:
        with_request = (*load.ranks, request.rank)
        step = self.decode.step_s(with_request)
        if step > self.slo_step_s:
            return math.inf
        d_decode = step - self.decode.step_s(load.ranks)
        queued = load.prefill_tokens
        d_prefill = self.prefill.pass_s(queued + request.prompt_tokens) - self.prefill.pass_s(
            queued
        )
        return (d_prefill / self.mean_output_tokens + d_decode) * load.requests

    def choose(self, loads: Mapping[str, LoraLoad], request: LoraRequest) -> str | None:
        if not loads:
            return None
        ordered = sorted(loads.values(), key=lambda load: load.instance_id)
        costs = [(self.cost(load, request), load) for load in ordered]
        best_cost, best = min(costs, key=lambda pair: pair[0])
        if math.isinf(best_cost):  # over the SLO everywhere: the shortest step
            best = min(ordered, key=lambda load: self.decode.step_s((*load.ranks, request.rank)))
        return best.instance_id


class LeastLoadedLora:
    """The instance holding the fewest requests (ties: the first by id)."""

    def choose(self, loads: Mapping[str, LoraLoad], request: LoraRequest) -> str | None:
        if not loads:
            return None
        return min(sorted(loads), key=lambda name: loads[name].requests)


@dataclass(slots=True)
class RandomLora:
    """Uniform over the instances, from a seeded generator."""

    seed: int = 0
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def choose(self, loads: Mapping[str, LoraLoad], request: LoraRequest) -> str | None:
        return self._rng.choice(sorted(loads)) if loads else None


@dataclass(slots=True)
class FirstFit:
    """The first instance by id whose predicted step stays within the SLO; else the least
    loaded."""

    decode: DecodeCostModel
    slo_step_s: float

    def choose(self, loads: Mapping[str, LoraLoad], request: LoraRequest) -> str | None:
        for name in sorted(loads):
            if self.decode.step_s((*loads[name].ranks, request.rank)) <= self.slo_step_s:
                return name
        return LeastLoadedLora().choose(loads, request)
