"""The sNIC's central scheduler: credit-based admission of packets into NT chains.

Every NT instance has a fixed number of credits (8 by default), one per packet it may hold.
Before a packet enters its chain, the scheduler reserves one credit in every NT of the chain
at once, waiting until all are free, so a packet never stalls half-way through a chain; each
credit returns when the packet leaves that NT. Instances are FIFO servers: `free_at_ns` says
when one can start its next packet and `busy_ns` adds up its service time (utilisation).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

from fpga_models.supernic.params import TaskSpec
from fpga_models.supernic.tasks import NetworkTask


@dataclass(slots=True)
class TaskInstance:
    name: str
    task: NetworkTask
    spec: TaskSpec
    free_at_ns: float = 0.0
    busy_ns: float = 0.0
    credit_returns: list[float] = field(default_factory=list)  # heap of release times

    def credit_free_at(self, now_ns: float, credits: int) -> float:
        """Earliest time at or after `now_ns` when this instance has a free credit. Credits
        returned by `now_ns` are dropped, so at most `credits` are ever outstanding."""
        while self.credit_returns and self.credit_returns[0] <= now_ns:
            heapq.heappop(self.credit_returns)
        if len(self.credit_returns) < credits:
            return now_ns
        return self.credit_returns[0]

    def serve(self, arrival_ns: float, nbytes: int) -> float:
        """Run a packet through this instance; returns when it leaves."""
        start = max(arrival_ns, self.free_at_ns)
        service = self.spec.pipeline_ns + nbytes * 8.0 / self.spec.throughput_gbps
        self.free_at_ns = start + nbytes * 8.0 / self.spec.throughput_gbps  # pipelined
        self.busy_ns += self.free_at_ns - start
        return start + service


@dataclass(slots=True)
class SchedulerStats:
    packets: int = 0
    credit_waits: int = 0
    credit_wait_ns: float = 0.0


class CreditScheduler:
    def __init__(self, credits_per_task: int) -> None:
        self.credits = credits_per_task
        self.instances: dict[str, list[TaskInstance]] = {}
        self.stats = SchedulerStats()

    def add_instance(self, instance: TaskInstance) -> None:
        self.instances.setdefault(instance.name, []).append(instance)

    def can_run(self, chain: Sequence[str]) -> bool:
        return all(self.instances.get(name) for name in chain)

    def reserve(self, chain: Sequence[str], now_ns: float) -> tuple[float, list[TaskInstance]]:
        """Pick an instance per NT and the time a credit is free in all of them."""
        picks = [self._pick(self.instances[name], now_ns) for name in chain]
        start = max([now_ns, *(free_at for _, free_at in picks)])
        chosen = [instance for instance, _ in picks]
        self.stats.packets += 1
        if start > now_ns:
            for instance in chosen:
                instance.credit_free_at(start, self.credits)  # return the credits freed by `start`
            self.stats.credit_waits += 1
            self.stats.credit_wait_ns += start - now_ns
        return start, chosen

    def _pick(self, instances: list[TaskInstance], now_ns: float) -> tuple[TaskInstance, float]:
        """The instance with the earliest free credit (then the earliest free pipeline), and
        when that credit is free. Credits returned by `now_ns` go back to every instance."""
        if len(instances) == 1:
            return instances[0], instances[0].credit_free_at(now_ns, self.credits)
        frees = [(inst.credit_free_at(now_ns, self.credits), inst.free_at_ns) for inst in instances]
        best = min(range(len(instances)), key=frees.__getitem__)
        return instances[best], frees[best][0]

    def hold(self, instance: TaskInstance, release_ns: float) -> None:
        heapq.heappush(instance.credit_returns, release_ns)
