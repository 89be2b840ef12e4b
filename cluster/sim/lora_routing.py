"""LoRA requests routed over several instances in simulated time (`tetriserve sim caraserve`).

Each instance batches continuously: a step decodes one token of every request it runs,
in the time the decode cost model gives for their adapters' ranks, and also prefills the
requests that arrived since the last step (the prefill cost model over their prompt
tokens); those then run from the next step on, their first token out at the end of this
one. A request's time per output token is (finish - first token) / (output tokens - 1).
Requests arrive as the benchmark sends them (Poisson, Zipf-popular adapters of mixed
ranks) and a router from cluster/rank_routing.py places each one as it arrives, seeing
what every instance holds at that moment.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cluster.rank_routing import (
    DecodeCostModel,
    LoraLoad,
    LoraRequest,
    LoraRouter,
    PrefillCostModel,
)
from cluster.sim.events import EventQueue


@dataclass(frozen=True, slots=True)
class SimRequest:
    arrival_s: float
    rank: int
    prompt_tokens: int
    output_tokens: int


@dataclass(slots=True)
class _Running:
    request: SimRequest
    first_token_s: float = 0.0
    made: int = 0


@dataclass(slots=True)
class _Instance:
    name: str
    waiting: list[SimRequest] = field(default_factory=list)
    running: list[_Running] = field(default_factory=list)
    stepping: bool = False

    def load(self) -> LoraLoad:
        ranks = tuple(r.request.rank for r in self.running) + tuple(w.rank for w in self.waiting)
        return LoraLoad(self.name, ranks, sum(w.prompt_tokens for w in self.waiting))


@dataclass(frozen=True, slots=True)
class RoutingResult:
    tpots_s: list[float]  # per request of more than one output token
    ttfts_s: list[float]
    placed: dict[str, int]  # requests per instance

    def slo_attainment(self, slo_tpot_s: float) -> float:
        return sum(1 for t in self.tpots_s if t <= slo_tpot_s) / len(self.tpots_s)


def poisson_requests(
    ranks: Sequence[int], rate: float, prompt_tokens: int, output_tokens: int, seed: int = 0
) -> list[SimRequest]:
    """One request per rank given (in order), arriving as a Poisson process at `rate`."""
    rng = random.Random(seed)
    now, requests = 0.0, []
    for rank in ranks:
        now += rng.expovariate(rate)
        requests.append(SimRequest(now, rank, prompt_tokens, output_tokens))
    return requests


def simulate(
    requests: Sequence[SimRequest],
    instances: int,
    router: LoraRouter,
    decode: DecodeCostModel,
    prefill: PrefillCostModel,
) -> RoutingResult:
    events = EventQueue()
    pool = {f"decode-{i}": _Instance(f"decode-{i}") for i in range(instances)}
    tpots: list[float] = []
    ttfts: list[float] = []
    placed = dict.fromkeys(pool, 0)

    def step(instance: _Instance) -> None:
        if not (instance.waiting or instance.running):
            instance.stepping = False
            return
        instance.stepping = True
        joining, instance.waiting = instance.waiting, []
        seconds = decode.step_s([r.request.rank for r in instance.running])
        seconds += prefill.pass_s(sum(r.prompt_tokens for r in joining))
        events.after(seconds, finish_step, (instance, joining))

    def finish_step(stepped: tuple[_Instance, list[SimRequest]]) -> None:
        instance, joining = stepped
        now = events.now
        still = []
        for running in instance.running:
            running.made += 1
            if running.made >= running.request.output_tokens:
                tokens = running.request.output_tokens
                tpots.append((now - running.first_token_s) / (tokens - 1))
            else:
                still.append(running)
        for request in joining:
            ttfts.append(now - request.arrival_s)
            if request.output_tokens > 1:
                still.append(_Running(request, first_token_s=now, made=1))
        instance.running = still
        step(instance)

    def arrive(request: SimRequest) -> None:
        loads: Mapping[str, LoraLoad] = {name: inst.load() for name, inst in pool.items()}
        chosen = router.choose(loads, LoraRequest(request.rank, request.prompt_tokens))
        assert chosen is not None
        instance = pool[chosen]
        placed[chosen] += 1
        instance.waiting.append(request)
        if not instance.stepping:
            step(instance)

    for request in requests:
        events.at(request.arrival_s, arrive, request)
    events.run()
    return RoutingResult(tpots, ttfts, placed)
