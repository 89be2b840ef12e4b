"""What a simulation run measured: per-request latencies and what each instance cost.

On the live path these are the figures `tetriserve bench workloads` reports: time to first
token (TTFT: arrival at the ingress to the first token out of the prefill), job completion
time (JCT: arrival to the last token), and each instance's busy time. Resource is the
instance-seconds during which an instance held at least one request, summed over
instances; performance per dollar is `1 / (mean JCT in s * resource)`, as the benchmark
counts them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cluster.sim.workload import SimRequest


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of sorted `values`, by linear interpolation."""
    if not values:
        return math.nan
    rank = (len(values) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class Latency:
    mean_s: float
    p50_s: float
    p99_s: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Latency:
        ordered = sorted(values)
        mean = sum(ordered) / len(ordered) if ordered else math.nan
        return cls(mean, percentile(ordered, 50), percentile(ordered, 99))


@dataclass(frozen=True, slots=True)
class InstanceUsage:
    instance_id: str
    role: str  # at the end of the run
    compute_s: float  # seconds its engine ran passes
    held_s: float  # seconds it held at least one request
    utilisation: float  # compute_s / the run's makespan


@dataclass(frozen=True, slots=True)
class SimResult:
    requests: int
    finished: int
    makespan_s: float
    ttft: Latency
    jct: Latency
    instances: tuple[InstanceUsage, ...]
    flips: int = 0

    @property
    def resource_s(self) -> float:
        return sum(usage.held_s for usage in self.instances)

    @property
    def perf_per_dollar(self) -> float:
        cost = self.jct.mean_s * self.resource_s
        return 1.0 / cost if cost > 0 else math.nan


def summarize(
    requests: Sequence[SimRequest],
    usage: Iterable[tuple[str, str, float, float]],
    flips: int = 0,
) -> SimResult:
    """`usage`: (instance id, role, compute seconds, held seconds) of every instance."""
    done = [r for r in requests if not math.isnan(r.finished_s)]
    start = min((r.arrival_s for r in requests), default=0.0)
    makespan = max((r.finished_s for r in done), default=start) - start
    instances = tuple(
        InstanceUsage(iid, role, compute, held, compute / makespan if makespan > 0 else 0.0)
        for iid, role, compute, held in usage
    )
    return SimResult(
        requests=len(requests),
        finished=len(done),
        makespan_s=makespan,
        ttft=Latency.of(r.ttft_s for r in done),
        jct=Latency.of(r.jct_s for r in done),
        instances=instances,
        flips=flips,
    )
