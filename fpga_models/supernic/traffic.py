"""Multi-tenant traffic through one sNIC, with fair sharing and auto-scaling in the loop.

Time advances in DRF epochs (20 us). At the start of each epoch the sNIC takes what it
measured in the last one: each tenant's offered rate and, per byte of its ingress traffic, the
bytes it put through each NT, the egress port and the packet store (the ~3 us DRF run overlaps
the end of that epoch). It runs DRF over its resources, loads the resulting rates into the
parser's token buckets, and reports each NT's demand over capacity to the autoscaler. Tenants
then offer real payload bytes at constant rates; the sNIC admits them, and serves admitted
packets through the rest of the datapath in admission order. The report compares what each
tenant got with what DRF granted.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from fpga_models.supernic.autoscale import Autoscaler, ScaleEvent
from fpga_models.supernic.drf import dominant_share, drf_allocate
from fpga_models.supernic.switch import SuperNIC, TenantCounters


@dataclass(frozen=True, slots=True)
class TenantLoad:
    tenant: str
    offered_gbps: float
    chain: tuple[str, ...]
    packet_bytes: int = 4096
    alphabet: int = 16  # distinct byte values in the payloads: lower compresses better


@dataclass(slots=True)
class TrafficReport:
    delivered_gbps: dict[str, float]
    allocated_gbps: dict[str, float]
    dominant_shares: dict[str, float]
    drops: dict[str, int]
    scale_events: list[ScaleEvent] = field(default_factory=list)


def _payloads(load: TenantLoad, rng: np.random.Generator, count: int = 8) -> list[bytes]:
    return [
        rng.integers(0, load.alphabet, load.packet_bytes, dtype=np.uint8).tobytes()
        for _ in range(count)
    ]


def _snapshot(counters: TenantCounters) -> TenantCounters:
    return TenantCounters(
        counters.ingress_bytes,
        counters.egress_wire_bytes,
        counters.packets,
        dict(counters.task_bytes),
        counters.resident_byte_ns,
    )


class TrafficRun:
    def __init__(self, snic: SuperNIC, loads: list[TenantLoad], seed: int = 0) -> None:
        self.snic = snic
        self.loads = {load.tenant: load for load in loads}
        rng = np.random.default_rng(seed)
        self.payloads = {load.tenant: _payloads(load, rng) for load in loads}
        p = snic.params
        self.autoscaler = Autoscaler(
            p.overload_window_ns, p.region_load_ns, p.overload_threshold, p.max_instances_per_task
        )
        self.autoscaler.instances.update(p.instances)
        self.usage = {load.tenant: self._nominal_usage(load) for load in loads}
        self.rates: dict[str, float] = {}

    def capacities(self) -> dict[str, float]:
        p = self.snic.params
        capacity = {"ingress": p.port_gbps, "egress": p.port_gbps}
        for task, instances in self.snic.scheduler.instances.items():
            capacity[f"nt:{task}"] = len(instances) * p.tasks[task].throughput_gbps
        capacity["packet_store"] = float(p.packet_store_bytes)
        capacity["memory"] = float(p.task_memory_bytes)
        return capacity

    def _nominal_usage(self, load: TenantLoad) -> dict[str, float]:
        """Per Gbps of ingress, before anything is measured: every NT sees every byte."""
        tasks = self.snic.params.tasks
        usage = {"ingress": 1.0, "egress": 2.0 if "replicate" in load.chain else 1.0}
        usage.update({f"nt:{task}": 1.0 for task in load.chain})
        usage["memory"] = sum(tasks[task].state_bytes_per_gbps for task in load.chain)
        return usage

    def _measured_usage(self, tenant: str, delta: TenantCounters, epoch_ns: float) -> None:
        if delta.ingress_bytes == 0:
            return
        gbps = delta.ingress_bytes * 8.0 / epoch_ns
        usage = {"ingress": 1.0, "egress": delta.egress_wire_bytes / delta.ingress_bytes}
        for task, nbytes in delta.task_bytes.items():
            usage[f"nt:{task}"] = nbytes / delta.ingress_bytes
        usage["packet_store"] = delta.resident_byte_ns / epoch_ns / gbps
        usage["memory"] = self._nominal_usage(self.loads[tenant])["memory"]
        self.usage[tenant] = usage

    def _rebalance(self, offered: dict[str, float], now_ns: float) -> None:
        capacity = self.capacities()
        self.rates = drf_allocate(capacity, self.usage, caps=offered)
        for tenant, rate in self.rates.items():
            self.snic.parser.set_rate(tenant, rate, now_ns)
        for task in self.snic.scheduler.instances:
            demand = sum(offered[t] * self.usage[t].get(f"nt:{task}", 0.0) for t in offered)
            for ready in self.autoscaler.observe(task, demand / capacity[f"nt:{task}"], now_ns):
                self.snic.add_instance(ready)

    def run(self, epochs: int, warmup_epochs: int = 2) -> TrafficReport:
        epoch_ns = self.snic.params.epoch_ns
        next_arrival = dict.fromkeys(self.loads, 0.0)
        sent = dict.fromkeys(self.loads, 0)
        delivered = dict.fromkeys(self.loads, 0)
        granted = dict.fromkeys(self.loads, 0.0)
        window_usage: dict[str, dict[str, float]] = {t: {} for t in self.loads}
        window_start, window_end = warmup_epochs * epoch_ns, epochs * epoch_ns
        admitted: list[tuple[float, int, str, float, list[float]]] = []
        for epoch in range(epochs):
            start = epoch * epoch_ns
            before = {t: _snapshot(c) for t, c in self.snic.counters.items()}
            if epoch > 0:
                self._rebalance({t: load.offered_gbps for t, load in self.loads.items()}, start)
            arrivals = []
            for tenant, load in self.loads.items():
                gap = load.packet_bytes * 8.0 / load.offered_gbps
                while next_arrival[tenant] < start + epoch_ns:
                    arrivals.append((next_arrival[tenant], tenant))
                    next_arrival[tenant] += gap
            for at_ns, tenant in sorted(arrivals):
                payload = self.payloads[tenant][sent[tenant] % len(self.payloads[tenant])]
                sent[tenant] += 1
                parsed = self.snic.receive(tenant, len(payload), at_ns)
                if parsed is not None:
                    heapq.heappush(admitted, (parsed[0], sent[tenant], tenant, at_ns, parsed))
            # The datapath after the parser serves packets in the order they were admitted.
            while admitted and admitted[0][0] < start + epoch_ns:
                _, count, tenant, at_ns, parsed = heapq.heappop(admitted)
                payload = self.payloads[tenant][(count - 1) % len(self.payloads[tenant])]
                out = self.snic.forward(tenant, payload, self.loads[tenant].chain, parsed, at_ns)
                if window_start <= at_ns + out.latency_ns < window_end:
                    delivered[tenant] += len(payload)
            for tenant in self.loads:
                delta = _delta(self.snic.counters.get(tenant), before.get(tenant))
                self._measured_usage(tenant, delta, epoch_ns)
                if epoch >= warmup_epochs:
                    granted[tenant] += self.rates.get(tenant, 0.0)
                    for resource, amount in self.usage[tenant].items():
                        used = amount * delta.ingress_bytes * 8.0 / epoch_ns
                        window_usage[tenant][resource] = (
                            window_usage[tenant].get(resource, 0) + used
                        )
        window = max(1, epochs - warmup_epochs)
        capacity = self.capacities()
        return TrafficReport(
            delivered_gbps={t: b * 8.0 / (window_end - window_start) for t, b in delivered.items()},
            allocated_gbps={t: g / window for t, g in granted.items()},
            dominant_shares={
                t: dominant_share({r: v / window for r, v in u.items()}, capacity)
                for t, u in window_usage.items()
            },
            drops=dict(self.snic.parser.drops),
            scale_events=list(self.autoscaler.history),
        )


def _delta(now: TenantCounters | None, before: TenantCounters | None) -> TenantCounters:
    now = now or TenantCounters()
    before = before or TenantCounters()
    tasks = {t: b - before.task_bytes.get(t, 0.0) for t, b in now.task_bytes.items()}
    return TenantCounters(
        now.ingress_bytes - before.ingress_bytes,
        now.egress_wire_bytes - before.egress_wire_bytes,
        now.packets - before.packets,
        tasks,
        now.resident_byte_ns - before.resident_byte_ns,
    )
