"""The colocated baseline: plain vLLM servers, each running whole requests on one engine.

This is what `tetriserve serve --colocated` and the `bench workloads` baseline run: every
instance prefills and decodes in one continuous batch (`BatchEngine`), with chunked prefill
(prompt chunks share steps with decodes under a budget of ChunkSize tokens) or without
(prefill-only steps of whole prompts, up to max(max_model_len, 2048) tokens, ahead of the
decodes, as vLLM's default scheduler without chunking). Requests go to the instance with
the fewest outstanding requests (`cluster.placement.LeastLoaded`, on loads kept up to date
at every change), on the same cost model as the disaggregated cluster.
"""

from __future__ import annotations

from collections.abc import Sequence

from cluster.placement import InstanceLoad, LeastLoaded
from cluster.sim.batching import BatchEngine
from cluster.sim.batching import Sequence as EngineSequence
from cluster.sim.cluster_sim import Progress
from cluster.sim.cost_model import CostModel
from cluster.sim.events import EventQueue
from cluster.sim.instances import EngineLoop, Meter
from cluster.sim.results import SimResult, summarize
from cluster.sim.workload import SimRequest

UNCHUNKED_MIN_BUDGET = 2048


class ColocatedInstance:
    role = "colocated"

    def __init__(
        self, instance_id: str, cost: CostModel, chunked: bool, events: EventQueue, sim: Colocated
    ) -> None:
        budget = cost.chunk_tokens if chunked else max(cost.max_model_len, UNCHUNKED_MIN_BUDGET)
        self.engine = BatchEngine(
            cost,
            chunked=chunked,
            token_budget=budget,
            capacity_tokens=cost.kv_capacity_tokens,
            max_num_seqs=cost.max_num_seqs,
        )
        self.load = InstanceLoad(instance_id, free_kv_tokens=cost.kv_capacity_tokens)
        self.meter = Meter()
        self.events = events
        self.sim = sim
        self.loop = EngineLoop(self.engine, events, self.meter, self._step_done)

    def submit(self, request: SimRequest) -> None:
        self.meter.hold(self.events.now)
        self.load.queued += 1
        self.engine.add(
            EngineSequence(
                request,
                order=request.index,
                predicted_output=request.output_tokens,
                to_compute=request.prompt_tokens,
                kv_tokens=0,
                generated=0,
            )
        )
        self.loop.kick()

    def _step_done(self, first: list[EngineSequence], ended: list[EngineSequence]) -> None:
        now = self.events.now
        for sequence in first:
            sequence.request.first_token_s = now
            self.load.queued -= 1
            self.load.running += 1
        for sequence in ended:
            sequence.request.finished_s = now
            self.load.running -= 1
            self.meter.let_go(now)
            self.sim.finished()


class Colocated:
    """One run of the colocated baseline: build it, then `run()` once."""

    def __init__(
        self,
        cost: CostModel,
        requests: Sequence[SimRequest],
        instances: int,
        chunked: bool,
        progress: Progress | None = None,
    ) -> None:
        if instances < 1:
            raise ValueError(f"instances must be >= 1, got {instances}")
        self.requests = list(requests)
        self.events = EventQueue()
        self.instances = {
            f"colocated-{i}": ColocatedInstance(f"colocated-{i}", cost, chunked, self.events, self)
            for i in range(instances)
        }
        self.loads = {iid: instance.load for iid, instance in self.instances.items()}
        self.placement = LeastLoaded()
        self.progress = progress
        self.done = 0
        self._next_arrival = 0
        self._report_every = max(len(self.requests) // 1000, 1)

    def run(self) -> SimResult:
        if self.requests:
            self.events.at(self.requests[0].arrival_s, self._arrive)
        self.events.run()
        if self.progress is not None:
            self.progress(self.done, len(self.requests))
        usage = [
            (iid, instance.role, instance.meter.compute_s, instance.meter.held_s)
            for iid, instance in self.instances.items()
        ]
        return summarize(self.requests, usage)

    def finished(self) -> None:
        self.done += 1
        if self.progress is not None and self.done % self._report_every == 0:
            self.progress(self.done, len(self.requests))

    def _arrive(self, _: object = None) -> None:
        requests, now = self.requests, self.events.now
        while self._next_arrival < len(requests) and requests[self._next_arrival].arrival_s <= now:
            chosen = self.placement.choose(self.loads)
            assert chosen is not None
            self.instances[chosen].submit(requests[self._next_arrival])
            self._next_arrival += 1
        if self._next_arrival < len(requests):
            self.events.at(requests[self._next_arrival].arrival_s, self._arrive)


def simulate_colocated(
    cost: CostModel,
    requests: Sequence[SimRequest],
    instances: int = 2,
    chunked: bool = True,
    progress: Progress | None = None,
) -> SimResult:
    """Serve `requests` on colocated vLLM-like instances; fills in their times."""
    return Colocated(cost, requests, instances, chunked, progress).run()
