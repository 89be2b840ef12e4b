"""GlobalScheduler: admission and prefill placement, the cluster monitor, instance flips.

`place` answers where a request's prefill runs: the least-loaded reachable instance in the
prefill role, with the KV capability every KV call made for the request presents (minted
for the tenant of its model and adapter; cluster/kv_capability.py). It refuses with
`Overloaded` when the cluster already holds `max_outstanding` requests, or when every
reachable instance of a role holds `max_queued_per_instance` waiting requests (the front
door turns either into a 429 with Retry-After). `decode_instance` answers where a request
whose decode instance died goes on: the least-loaded reachable one. The monitor collects
every instance's LoadReport each `monitor_interval_s` while requests are in flight or roles
are changing, and each `quiet_interval_s` otherwise (a request placed wakes it at once),
waiting at most ANSWER_TIMEOUT_S for each, and broadcasts the decode role's load to every
instance, whose decode dispatchers choose from it. With flips on, an instance idle for long
while the other role is busy is drained (no new work routed to it) and, once empty, told to
take the other role (cluster/instance_flip.py decides; the instance confirms). A role that
no instance answers for is taken over the same way, flips on or off. An instance
that did not answer the last round, or that a request's owner reported lost, is
unreachable: nothing is placed on it, nor dispatched to it, until it answers again. While
no instance of a role answers, its work goes to those of the other role. Each second the
monitor also checks that the owners of the requests in flight (the ingress replicas that
took them) still run, and ends the requests of an owner that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import ray
from prometheus_client import REGISTRY
from ray.exceptions import RayActorError

from actors import cpu_priority, metrics
from actors.wire import load_from_wire, request_from_wire, role_from_wire
from cluster.instance_flip import FlipController, Role
from cluster.kv_capability import CapabilityAuthority
from cluster.kv_pages import tenant_id
from cluster.placement import InstanceLoad, LeastLoaded, Placement
from cluster.recent_ids import RecentIds
from cluster.request import BASE_MODEL_NAME
from tetriserve.v1 import generate_pb2, scheduling_pb2

log = logging.getLogger(__name__)
# The memory nodes' and switches' figures are published this often.
STATS_EVERY_S = 2.5
_OTHER = {Role.PREFILL: Role.DECODE, Role.DECODE: Role.PREFILL}
# Longest the monitor waits for one instance's answer before it counts it unreachable.
ANSWER_TIMEOUT_S = 2.0
# This often, the owners of the requests in flight are checked.
OWNER_CHECK_S = 1.0


class Overloaded(RuntimeError):
    """The cluster holds as many requests as it admits; try again later."""


class NoInstanceAvailable(Overloaded):
    """No instance of the role answers now (Ray may be starting one again)."""


class GlobalScheduler:
    def __init__(
        self,
        instances: dict[str, Any],
        roles: dict[str, str],
        max_outstanding: int = 256,
        max_queued_per_instance: int = 128,
        monitor_interval_s: float = 0.25,
        quiet_interval_s: float = 1.0,
        placement: Placement | None = None,
        infrastructure: dict[str, Any] | None = None,
        metrics_port: int | None = None,
        flip_idle_rounds: int | None = None,
        *,
        kv_secret: bytes,
        model_id: str,
    ) -> None:
        cpu_priority.yield_to_engines()
        self._metrics_target = metrics.expose(metrics_port)
        # Memory nodes, switches and the adapter store, whose figures the monitor publishes
        # (the request path holds their handles too, so they outlive a restart of this).
        self.infrastructure = dict(infrastructure or {})
        self.instances = dict(instances)
        # flip_idle_rounds None: roles change only when an operator asks (request_flip).
        self.roles = FlipController(
            {name: Role(role) for name, role in roles.items()},
            idle_rounds=flip_idle_rounds,
        )
        self.kv_authority = CapabilityAuthority(kv_secret)
        self.model_id = model_id
        self.max_outstanding = max_outstanding
        self.max_queued_per_instance = max_queued_per_instance
        self.monitor_interval_s = monitor_interval_s
        self.quiet_interval_s = quiet_interval_s
        self._request_placed = asyncio.Event()  # cuts a quiet pause short
        self.placement = placement or LeastLoaded()
        self.loads = {name: InstanceLoad(name) for name in self.instances}
        self.flips: list[tuple[str, str]] = []  # (instance, new role), in order
        self.in_flight: dict[str, str] = {}  # request id -> prefill instance
        self.owners: dict[str, str] = {}  # request id -> its owner ("namespace/actor name")
        self._ended: RecentIds[bool] = RecentIds()  # ended before their placement arrived
        self.unreachable: set[str] = set()  # until their next load report
        self._lost_this_round: set[str] = set()  # reported lost while a round was under way
        self._monitor: asyncio.Task | None = None
        self.tenant_names: dict[int, str] = {}  # KV tenant -> the model name requests gave
        self.cluster_stats = metrics.ClusterStats(
            self._instance_states, lambda: list(self.flips), self.tenant_names
        )
        if metrics_port is not None:
            REGISTRY.register(self.cluster_stats)

    def _start_monitor(self) -> None:
        if self._monitor is None:
            self._monitor = asyncio.get_running_loop().create_task(self._monitor_loop())

    async def place(self, request_bytes: bytes, owner: str = "") -> bytes:
        """`owner`: the named actor that owns the request ("namespace/name": the ingress
        replica that took it), whose death ends the request here; "" for none."""
        self._start_monitor()
        request = generate_pb2.GenerateRequest.FromString(request_bytes)
        if self._ended.take(request.request_id):
            raise Overloaded("the request ended before it was placed")  # its owner is gone
        if len(self.in_flight) >= self.max_outstanding:
            raise Overloaded(f"{len(self.in_flight)} requests in flight; the limit is reached")
        for role in (Role.PREFILL, Role.DECODE):
            if self._queues_full(role):
                raise Overloaded(f"every {role.value} instance's queue is full")
        chosen = self.placement.choose(self._reachable(Role.PREFILL))
        if chosen is None:
            raise NoInstanceAvailable("no prefill instance is available")
        self.loads[chosen].placed()
        self.in_flight[request.request_id] = chosen
        self._request_placed.set()
        if owner:
            self.owners[request.request_id] = owner
        tenant = tenant_id(self.model_id, request_from_wire(request).adapter_key)
        self.tenant_names.setdefault(tenant, request.model or BASE_MODEL_NAME)
        decision = scheduling_pb2.DispatchDecision(
            request_id=request.request_id,
            prefill_instance=chosen,
            policy="least_loaded",
            kv_capability=self.kv_authority.mint(tenant),
        )
        return decision.SerializeToString()

    def decode_instance(self) -> str:
        """The reachable decode instance that continues a request whose decode instance
        died: the least loaded ("" when there is none)."""
        return self.placement.choose(self._reachable(Role.DECODE)) or ""

    def _reachable(self, role: Role) -> dict[str, InstanceLoad]:
        """The loads of the instances that take work of `role` and answered last round;
        while none does, those of the other role. Every instance can run work of either
        role, so when the last instance of a role dies, the survivors serve both until it
        is back (or another takes the role over), rather than the service stopping."""
        return self._answering(role) or self._answering(_OTHER[role])

    def _queues_full(self, role: Role) -> bool:
        loads = self._reachable(role).values()
        return bool(loads) and all(load.queued >= self.max_queued_per_instance for load in loads)

    def _answering(self, role: Role) -> dict[str, InstanceLoad]:
        return {
            name: self.loads[name]
            for name in self.roles.routable(role)
            if name not in self.unreachable
        }

    def prefilled(self, request_id: str) -> None:
        """The request left its prefill instance."""
        chosen = self.in_flight.get(request_id)
        if chosen is not None:
            self.loads[chosen].left()

    def finished(self, request_id: str) -> None:
        """The request's owner let it go. Ray may run an owner's calls out of order, so a
        request that ends before its placement arrived is remembered, and not placed."""
        if request_id in self.in_flight:
            self.prefilled(request_id)
            del self.in_flight[request_id]
            self.owners.pop(request_id, None)
        else:
            self._ended.remember(request_id, True)

    def instance_lost(self, instance_id: str) -> None:
        """A request's owner saw the instance die: unreachable until it reports again."""
        if instance_id in self.instances:
            self.unreachable.add(instance_id)
            self._lost_this_round.add(instance_id)

    def metrics_target(self) -> str | None:
        """Where Prometheus scrapes the scheduler ("host:port"), None when it exports nothing."""
        return self._metrics_target

    def _instance_states(self) -> dict[str, tuple[str, bool]]:
        """Each serving instance's role now, and whether it answered the last round."""
        unreachable = set(self.unreachable)
        return {
            name: (self.roles.role(name).value, name not in unreachable) for name in self.instances
        }

    def stats(self) -> dict[str, Any]:
        roles = {name: self.roles.role(name).value for name in self.instances}
        return {
            "in_flight": len(self.in_flight),
            "roles": roles,
            "flips": list(self.flips),
            "unreachable": sorted(self.unreachable),
        }

    def request_flip(self, instance_id: str) -> None:
        """An operator's flip: drain the instance now, switch its role once it is empty."""
        self.roles.request_flip(instance_id)

    async def _monitor_loop(self) -> None:
        stats_due = owners_due = 0.0
        while True:
            try:
                await self._collect_and_broadcast()
                metrics.WAITING.labels("global-scheduler").set(len(self.in_flight))
                now = time.monotonic()
                if now >= stats_due:
                    stats_due = now + STATS_EVERY_S
                    await self._publish_infrastructure_stats()
                if now >= owners_due:
                    owners_due = now + OWNER_CHECK_S
                    await self._end_orphans()
            except Exception:
                log.exception("cluster monitor round failed")
            await self._pause()

    def next_round_in_s(self) -> float:
        """The monitor's pause before its next round: short while requests are in flight or
        an instance is changing role, long while the cluster is quiet."""
        busy = self.in_flight or self.roles.changing()
        return self.monitor_interval_s if busy else self.quiet_interval_s

    async def _pause(self) -> None:
        self._request_placed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._request_placed.wait(), self.next_round_in_s())

    async def _end_orphans(self) -> None:
        """Requests whose owner died (an ingress replica killed mid-flight) end here. Ray
        cancels their calls on the instances, which give their leases back; nobody is left
        to report them finished, and they would count against `max_outstanding` for good."""
        owners = set(self.owners.values())
        alive = await asyncio.gather(*(_owner_alive(owner) for owner in owners))
        dead = {owner for owner, answered in zip(owners, alive, strict=True) if not answered}
        for request_id in [r for r, owner in self.owners.items() if owner in dead]:
            log.warning("request %s ended: its owner %s died", request_id, self.owners[request_id])
            self.finished(request_id)

    async def _publish_infrastructure_stats(self) -> None:
        polled = {
            n: h.stats.remote()
            for n, h in self.infrastructure.items()
            if n.startswith(("memory-", "switch-"))
        }
        for name, found in (await _answers(polled)).items():
            if not isinstance(found, dict):
                continue
            stats = self.cluster_stats
            if name.startswith("memory-"):
                stats.pages_in_use[name] = found.get("pages_in_use", 0)
                stats.tenant_pages[name] = dict(found.get("tenant_pages", {}))
                stats.region_bytes[name] = found.get("region_bytes", 0)
                if found.get("capacity_bytes") is not None:
                    stats.capacity_bytes[name] = found["capacity_bytes"]
            else:
                tenants = found.get("tenants", {})
                inbound = sum(t.get("bytes_in", 0) for t in tenants.values())
                outbound = sum(t.get("bytes_out", 0) for t in tenants.values())
                stats.switch_bytes[name] = (inbound, outbound)
                stats.compression_ratio[name] = found.get("compression_ratio", 1.0)
                stats.switch_shares[name] = {t: u.get("share", 0.0) for t, u in tenants.items()}

    async def _collect_and_broadcast(self) -> None:
        self._lost_this_round = set()
        reports = await _gather_reports(self.instances)
        # A report may have left an instance before it died: a loss reported meanwhile holds.
        reports = {n: r for n, r in reports.items() if n not in self._lost_this_round}
        self.unreachable = set(self.instances) - set(reports)
        self._record_loads(reports)
        self.roles.observe({name: self.loads[name] for name in reports})
        taker = self.roles.take_over(set(reports))
        if taker is not None:
            log.warning("no instance of one role answers: %s drains to take it over", taker)
        flipped = await self._flip_drained()
        # Broadcast after the flips, with the flipped instances' loads in their new role
        # (free KV and all), so an instance that became a decode instance this round is a
        # candidate of every prefill's dispatcher before the flip is reported done.
        if flipped:
            again = await _gather_reports({n: self.instances[n] for n, _ in flipped})
            self._record_loads(again)
            reports |= again
        decode = [reports[name] for name in self._reachable(Role.DECODE) if name in reports]
        await _answers({n: h.set_decode_loads.remote(decode) for n, h in self.instances.items()})
        self.flips.extend(flipped)

    def _record_loads(self, reports: dict[str, bytes]) -> None:
        """The reported loads become the scheduler's view of each instance, and so do the
        roles they name: an instance's word for its role holds over this scheduler's (one
        started again begins from the deployment's first roles)."""
        for name, report in reports.items():
            message = scheduling_pb2.LoadReport.FromString(report)
            role = role_from_wire(message)
            if role is not None and role is not self.roles.role(name):
                log.warning("instance %s serves as %s: the scheduler follows it", name, role)
                self.roles.reported(name, role)
            load = load_from_wire(message)
            if self.roles.role(name) is Role.PREFILL:  # placed but not yet arrived counts too
                load.reported(self.loads[name])
            self.loads[name] = load

    async def _flip_drained(self) -> list[tuple[str, str]]:
        """Tells each drained instance to take the other role; confirms when it did.
        Returns the (instance, new role) pairs that flipped."""
        flipped = []
        for name in self.roles.ready_to_flip():
            target = Role.DECODE if self.roles.role(name) is Role.PREFILL else Role.PREFILL
            try:
                await self.instances[name].set_role.remote(target.value)
            except Exception as exc:  # still busy or gone: try again next round
                log.info("flip of %s to %s not yet: %s", name, target, exc)
                continue
            self.roles.flipped(name)
            flipped.append((name, target.value))
            log.info("instance %s now serves as %s", name, target)
        return flipped


async def _owner_alive(owner: str) -> bool:
    """Whether the named actor `owner` ("namespace/name") still runs; a busy one that does
    not answer within ANSWER_TIMEOUT_S counts as running."""
    namespace, _, name = owner.partition("/")
    try:
        handle = await asyncio.to_thread(ray.get_actor, name, namespace)
        await asyncio.wait_for(handle.__ray_ready__.remote(), ANSWER_TIMEOUT_S)
    except (ValueError, RayActorError):  # no actor of that name is left, or it died
        return False
    except TimeoutError:
        return True
    return True


async def _gather_reports(handles: dict[str, Any]) -> dict[str, bytes]:
    """Load reports of the instances that answer; a dead one, or one that Ray is still
    restarting, is left out of this round."""
    answers = await _answers({n: h.load_report.remote() for n, h in handles.items()})
    return {n: r for n, r in answers.items() if isinstance(r, bytes)}


async def _answers(calls: dict[str, Any]) -> dict[str, Any]:
    """The results of the calls that succeed within ANSWER_TIMEOUT_S: a call to an actor
    that is restarting waits for its restart, and must not hold up the whole round."""
    names = list(calls)
    waits = (asyncio.wait_for(calls[n], ANSWER_TIMEOUT_S) for n in names)
    results = await asyncio.gather(*waits, return_exceptions=True)
    return {n: r for n, r in zip(names, results, strict=True) if not isinstance(r, BaseException)}
