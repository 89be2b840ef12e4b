"""A tetriserve cluster in simulated time, driven by the live system's own policies.

The request path, as in README's "What happens to a request":

    arrival at the ingress ─► GlobalScheduler placement (`cluster.placement.LeastLoaded`
    over the prefill role's loads, through its heap index) ─► prefill instance
    (`PrefillQueue`, ChunkSize passes) ─► first token ─► length prediction
    (`LengthPredictor`, or given lengths) ─► decode
    dispatch (`cluster.decode_dispatch.make_dispatcher`, over the decode loads of the last
    monitor round) ─► decode instance (`cluster.decode_admission.make_admission`, KV read
    over its link, continuous batching) ─► last token ─► the predictor learns its length.

A monitor round every `monitor_interval_s` (while requests are in flight) refreshes the
scheduler's prefill loads and the decode loads every dispatcher sees, and feeds the
`cluster.instance_flip.FlipController`, which drains an idle instance of one role while the
other is busy; a drained instance takes the other role at once. Between rounds the
scheduler and the dispatchers count their own placements into those loads, as the live
ones do. All prefill instances' dispatchers share one view of the decode loads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cluster.config import SchedulingConfig
from cluster.decode_admission import make_admission
from cluster.decode_dispatch import decode_need, make_dispatcher
from cluster.instance_flip import FlipController, Role
from cluster.length_predictor import LengthBuckets
from cluster.placement import InstanceLoad, LeastLoaded, LoadsById, Placement
from cluster.prefill_queue import PrefillQueue
from cluster.sim.core_pair import CorePair
from cluster.sim.cost_model import CostModel
from cluster.sim.events import EventQueue
from cluster.sim.instances import DecodeInstance, Meter, Pace, PrefillInstance, all_cores
from cluster.sim.prediction import LengthSource, OracleLengths
from cluster.sim.results import SimResult, summarize
from cluster.sim.workload import SimRequest

# Called with (requests finished, requests in the run).
Progress = Callable[[int, int], None]
Instance = PrefillInstance | DecodeInstance


@dataclass(frozen=True, slots=True)
class Topology:
    prefill: int = 1
    decode: int = 1
    monitor_interval_s: float = 0.1  # TetriInfer's cluster monitor: about every 100 ms
    # None: every engine has its node's cores to itself. A share: prefill-i and decode-i
    # share one node's cores, the prefill leading, on its partner's core for at most this
    # share of any second (the default CPU deployment's prefill_core_share).
    prefill_core_share: float | None = None


class ClusterSim:
    """One run: build it, then `run()` once."""

    def __init__(
        self,
        cost: CostModel,
        requests: Sequence[SimRequest],
        topology: Topology = Topology(),
        scheduling: SchedulingConfig | None = None,
        lengths: LengthSource | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.cost = cost
        self.requests = list(requests)
        self.topology = topology
        self.scheduling = scheduling or SchedulingConfig()
        buckets = LengthBuckets(self.scheduling.length_granularity, self.scheduling.length_buckets)
        self.lengths = lengths or OracleLengths(buckets)
        self.progress = progress
        self.events = EventQueue()
        roles = {f"prefill-{i}": Role.PREFILL for i in range(topology.prefill)}
        roles |= {f"decode-{i}": Role.DECODE for i in range(topology.decode)}
        idle_rounds = self.scheduling.flip_idle_rounds if self.scheduling.flip else None
        self.roles = FlipController(roles, idle_rounds=idle_rounds)
        self.placement = LeastLoaded()
        self.meters = {iid: Meter() for iid in roles}
        self.paces = self._core_pairs(topology, cost)
        self.dispatchers: dict[str, Placement] = {}
        self.instances: dict[str, Instance] = {iid: self._build(iid, r) for iid, r in roles.items()}
        self.prefill_loads: dict[str, InstanceLoad] = {}
        self.decode_loads: Mapping[str, InstanceLoad] = {}
        self.flips = 0
        self.in_flight = 0
        self.finished = 0
        self._next_arrival = 0
        self._monitoring = False
        self._report_every = max(len(self.requests) // 1000, 1)
        self._refresh_views()

    def run(self) -> SimResult:
        if self.requests:
            self.events.at(self.requests[0].arrival_s, self._arrive)
        self.events.run()
        if self.progress is not None:
            self.progress(self.finished, len(self.requests))
        usage = [
            (iid, inst.role, self.meters[iid].compute_s, self.meters[iid].held_s)
            for iid, inst in self.instances.items()
        ]
        return summarize(self.requests, usage, self.flips)

    # --- the request path ---------------------------------------------------------------------
    def _arrive(self, _: object = None) -> None:
        """Every request that arrives now is placed; the next arrival is scheduled."""
        requests, now = self.requests, self.events.now
        while self._next_arrival < len(requests) and requests[self._next_arrival].arrival_s <= now:
            self._place(requests[self._next_arrival])
            self._next_arrival += 1
        if self._next_arrival < len(requests):
            self.events.at(requests[self._next_arrival].arrival_s, self._arrive)
        if not self._monitoring:
            self._monitoring = True
            self.events.after(self.topology.monitor_interval_s, self._monitor_round)

    def _place(self, request: SimRequest) -> None:
        chosen = self.prefill_index.choose()
        if chosen is None:
            raise RuntimeError("no prefill instance is routable")
        load = self.prefill_loads[chosen]
        load.placed()
        self.prefill_index.changed(load)
        self.in_flight += 1
        instance = self.instances[chosen]
        assert isinstance(instance, PrefillInstance)
        instance.submit(request)

    def _first_token(self, request: SimRequest, instance_id: str) -> None:
        load = self.prefill_loads.get(instance_id)
        if load is not None:
            load.left()
            self.prefill_index.changed(load)
        if request.output_tokens <= 1:
            request.finished_s = request.first_token_s
            self._finished(request, instance_id)
            return
        prediction = self.lengths.predict(request)
        need = decode_need(
            request.prompt_tokens, prediction.lower_tokens, self.scheduling.heavy_decode_tokens
        )
        chosen = self.dispatchers[instance_id].choose(self.decode_loads, need)
        if chosen is None:
            raise RuntimeError("no decode instance is routable")
        self.decode_loads[chosen].dispatched(need, prediction.lower_tokens)
        decode = self.instances[chosen]
        assert isinstance(decode, DecodeInstance)
        decode.submit(request, prediction.lower_tokens, need.heavy)

    def _finished(self, request: SimRequest, instance_id: str) -> None:
        self.in_flight -= 1
        self.finished += 1
        self.lengths.observe(request)
        if self.progress is not None and self.finished % self._report_every == 0:
            self.progress(self.finished, len(self.requests))

    # --- the cluster monitor and flips ----------------------------------------------------------
    def _monitor_round(self, _: object = None) -> None:
        loads = {iid: self._load(iid) for iid in self.instances}
        self.roles.observe(loads)
        for iid in self.roles.ready_to_flip():
            role = self.roles.flipped(iid)
            self.instances[iid] = self._build(iid, role)
            loads[iid] = self._load(iid)
            self.flips += 1
        self._refresh_views(loads)
        more = self.in_flight or self._next_arrival < len(self.requests)
        self._monitoring = bool(more)
        if more:
            self.events.after(self.topology.monitor_interval_s, self._monitor_round)

    def _load(self, instance_id: str) -> InstanceLoad:
        instance = self.instances[instance_id]
        load = instance.load()
        known = self.prefill_loads.get(instance_id)
        if isinstance(instance, PrefillInstance) and known is not None:
            load.reported(known)  # placed but not yet arrived counts too
        return load

    def _refresh_views(self, loads: dict[str, InstanceLoad] | None = None) -> None:
        """The scheduler's prefill loads and the broadcast decode loads, routable only."""
        loads = loads or {iid: self._load(iid) for iid in self.instances}
        self.prefill_loads = {iid: loads[iid] for iid in self.roles.routable(Role.PREFILL)}
        self.prefill_index = self.placement.indexed(self.prefill_loads)
        self.decode_loads = LoadsById({iid: loads[iid] for iid in self.roles.routable(Role.DECODE)})

    @staticmethod
    def _core_pairs(topology: Topology, cost: CostModel) -> dict[str, Pace]:
        """Each paired instance's pace: prefill-i leads and decode-i yields on one node's
        cores, whichever role either takes later."""
        if topology.prefill_core_share is None:
            return {}
        if cost.narrow is None:
            raise ValueError(f"cost model {cost.name} has no `narrow` costs to share cores by")
        paces: dict[str, Pace] = {}
        for i in range(min(topology.prefill, topology.decode)):
            pair = CorePair(topology.prefill_core_share, cost.narrow)
            paces[f"prefill-{i}"], paces[f"decode-{i}"] = pair.leading_pass, pair.yielding_pass
        return paces

    def _build(self, instance_id: str, role: Role) -> Instance:
        meter, events = self.meters[instance_id], self.events
        pace = self.paces.get(instance_id, all_cores)
        if role is Role.PREFILL:
            seed = self.scheduling.seed
            self.dispatchers[instance_id] = make_dispatcher(self.scheduling.dispatcher, seed)
            queue = PrefillQueue(
                self.scheduling.prefill_policy, self.scheduling.prefill_sched_batch
            )
            return PrefillInstance(
                instance_id, self.cost, queue, events, meter, self._first_token, pace
            )
        admission = make_admission(self.scheduling.admission)
        return DecodeInstance(
            instance_id, self.cost, admission, events, meter, self._finished, pace
        )


def simulate_cluster(
    cost: CostModel,
    requests: Sequence[SimRequest],
    topology: Topology = Topology(),
    scheduling: SchedulingConfig | None = None,
    lengths: LengthSource | None = None,
    progress: Progress | None = None,
) -> SimResult:
    """Serve `requests` on a disaggregated tetriserve cluster; fills in their times."""
    return ClusterSim(cost, requests, topology, scheduling, lengths, progress).run()
