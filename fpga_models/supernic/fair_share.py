"""Fair sharing of a SuperNIC switch among tenants: DRF over its resources, per epoch, and
per-tenant token buckets that hold each tenant to its share.

The switch (actors/switch/supernic_switch.py) asks `FairShare.admit` how long a tenant's
payload must wait before it enters, waits that long itself, runs the payload through the sNIC
model and meters what it used (`FairShare.record`). Resources are the sNIC's ingress and
egress bandwidth and each network task's throughput, in bytes per second: the sNIC's own
figures times `scale` (a switch in Python carries far less than 100 Gbps; a test scales it
down to make the sharing bind). Every epoch (50 ms of the clock by default) the meter's last
`window_epochs` epochs give each tenant that sent bytes its demand vector per ingress byte (a
window, as a 64 KiB page at 1 MB/s is one page every 1.3 epochs); `drf_allocate` splits the
capacities among them, a tenant that never waited for tokens in the window being capped at
`headroom` times what it sent. A tenant's bucket then fills at its allocation, or at its
uncapped fair share when that is more and it was not backlogged, so a quiet tenant can grow
again at once; a tenant silent for the whole window has no limit until it is measured again.
Pure code: the clock is injected and nothing here sleeps.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fpga_models.supernic.drf import dominant_share, drf_allocate, jain_index
from fpga_models.supernic.params import SuperNICParams
from fpga_models.supernic.parser import TokenBucket


class RateLimiter:
    """Per-tenant token buckets; `reserve` takes a payload's tokens and says how long it
    must wait before it passes."""

    def __init__(
        self,
        default_bytes_per_s: float | None,
        burst_s: float = 0.05,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.default = default_bytes_per_s
        self.burst_s = burst_s
        self.clock_ns = clock_ns
        self.rates: dict[str, float | None] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def set_rate(self, tenant: str, bytes_per_s: float | None) -> None:
        """A new rate; tokens held (or owed by waiting calls) carry over."""
        with self._lock:
            self.rates[tenant] = bytes_per_s
            bucket = self._buckets.get(tenant)
            if bucket is None or bytes_per_s is None:
                self._buckets.pop(tenant, None)
                return
            bucket.set_rate(bytes_per_s * 8e-9, self.clock_ns())
            bucket.burst_bytes = max(bytes_per_s * self.burst_s, 1.0)
            bucket.tokens = min(bucket.tokens, bucket.burst_bytes)

    def reserve(self, tenant: str, nbytes: int) -> float:
        """Takes the tokens now; returns how long the caller must wait before sending."""
        with self._lock:
            rate = self.rates.get(tenant, self.default)
            if rate is None:
                return 0.0
            bucket = self._buckets.get(tenant)
            if bucket is None:
                burst = max(rate * self.burst_s, 1.0)
                bucket = self._buckets[tenant] = TokenBucket(rate * 8e-9, burst, burst, 0.0)
            now = self.clock_ns()
            at = bucket.admit_at(nbytes, now)
            bucket.take(nbytes, now)
        return max((at - now) / 1e9, 0.0)


@dataclass(frozen=True, slots=True)
class FairShareConfig:
    epoch_s: float = 0.05
    scale: float = 1.0  # the switch's capacities: the sNIC's, times this
    headroom: float = 1.25  # a tenant that did not wait may grow this much in one epoch
    window_epochs: int = 10  # demands are measured over this many epochs


@dataclass(slots=True)
class Usage:
    """What one tenant's payloads used in one epoch (bytes) and how long they waited."""

    ingress: float = 0.0
    egress: float = 0.0
    tasks: dict[str, float] = field(default_factory=dict)
    waited_s: float = 0.0

    def add(self, other: Usage) -> None:
        self.ingress += other.ingress
        self.egress += other.egress
        self.waited_s += other.waited_s
        for task, nbytes in other.tasks.items():
            self.tasks[task] = self.tasks.get(task, 0.0) + nbytes

    def per_byte(self, resources: Mapping[str, float]) -> dict[str, float]:
        """The demand vector: each resource's bytes per ingress byte."""
        used = {"ingress": self.ingress, "egress": self.egress}
        used.update({f"nt:{task}": nbytes for task, nbytes in self.tasks.items()})
        return {r: used[r] / self.ingress for r in resources if used.get(r, 0.0) > 0}


def switch_capacities(params: SuperNICParams, scale: float) -> dict[str, float]:
    """Bytes per second of each resource: the ports, and every NT's instances together."""
    to_bytes = 1e9 / 8 * scale
    capacity = {"ingress": params.port_gbps * to_bytes, "egress": params.port_gbps * to_bytes}
    for task, count in params.instances.items():
        capacity[f"nt:{task}"] = count * params.tasks[task].throughput_gbps * to_bytes
    return capacity


class FairShare:
    def __init__(
        self,
        params: SuperNICParams,
        config: FairShareConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or FairShareConfig()
        self.capacities = switch_capacities(params, self.config.scale)
        self.limiter = RateLimiter(
            None, burst_s=self.config.epoch_s, clock_ns=lambda: round(clock() * 1e9)
        )
        self.clock = clock
        self.epochs = 0
        self.allocation: dict[str, float] = {}  # ingress bytes/s, this epoch
        self.granted: dict[str, float] = {}  # bytes allocated over all epochs so far
        self.demand: dict[str, dict[str, float]] = {}
        self.backlogged: set[str] = set()
        self._epoch: dict[str, Usage] = {}
        self._epoch_start = clock()
        self._window: deque[tuple[dict[str, Usage], float]] = deque(
            maxlen=self.config.window_epochs
        )
        self._lock = threading.Lock()

    def admit(self, tenant: str, nbytes: int) -> float:
        """Takes `nbytes` of the tenant's tokens; the seconds it must wait before they pass
        (counted as waited now: the tenant is backlogged from now, not once it goes on)."""
        self.tick()
        delay = self.limiter.reserve(tenant, nbytes)
        if delay > 0:
            self.record(tenant, waited_s=delay)
        return delay

    def record(
        self,
        tenant: str,
        ingress: int = 0,
        egress: int = 0,
        tasks: Mapping[str, float] | None = None,
        waited_s: float = 0.0,
    ) -> None:
        """Meters what a tenant's payload used: bytes in, on the egress wire, through each NT,
        and time held at its bucket."""
        with self._lock:
            used = Usage(ingress, egress, dict(tasks or {}), waited_s)
            self._epoch.setdefault(tenant, Usage()).add(used)

    def tick(self) -> None:
        """Ends the epoch once it has run its length: DRF on what it measured, new rates."""
        with self._lock:
            now = self.clock()
            elapsed = now - self._epoch_start
            if elapsed < self.config.epoch_s:
                return
            self._window.append((self._epoch, elapsed))
            self._epoch, self._epoch_start = {}, now
            for tenant, rate in self.allocation.items():
                self.granted[tenant] = self.granted.get(tenant, 0.0) + rate * elapsed
            measured: dict[str, Usage] = {}
            for epoch, _ in self._window:
                for tenant, usage in epoch.items():
                    measured.setdefault(tenant, Usage()).add(usage)
            rates = self._rebalance(measured, sum(seconds for _, seconds in self._window))
            self.epochs += 1
        for tenant in set(self.limiter.rates) - set(rates):
            self.limiter.set_rate(tenant, None)
        for tenant, rate in rates.items():
            self.limiter.set_rate(tenant, rate)

    def _rebalance(self, measured: dict[str, Usage], elapsed: float) -> dict[str, float]:
        active = {tenant: usage for tenant, usage in measured.items() if usage.ingress > 0}
        self.demand = {t: u.per_byte(self.capacities) for t, u in active.items()}
        self.backlogged = {t for t, u in active.items() if u.waited_s > 0}
        caps = {
            t: u.ingress / elapsed * self.config.headroom
            for t, u in active.items()
            if t not in self.backlogged
        }
        self.allocation = drf_allocate(self.capacities, self.demand, caps)
        fair = drf_allocate(self.capacities, self.demand)
        return {
            t: rate if t in self.backlogged else max(rate, fair[t])
            for t, rate in self.allocation.items()
        }

    def report(self) -> dict[str, object]:
        with self._lock:
            shares = {
                t: dominant_share(
                    {r: a * self.allocation[t] for r, a in v.items()}, self.capacities
                )
                for t, v in self.demand.items()
            }
            return {
                "epoch_s": self.config.epoch_s,
                "epochs": self.epochs,
                "capacities": dict(self.capacities),
                "jain_index": jain_index(list(shares.values())) if shares else 1.0,
                "tenants": {
                    tenant: {
                        "allocated_bytes_per_s": self.allocation.get(tenant, 0.0),
                        "granted_bytes": self.granted.get(tenant, 0.0),
                        "dominant_share": shares.get(tenant, 0.0),
                        "demand": self.demand.get(tenant, {}),
                        "backlogged": tenant in self.backlogged,
                    }
                    for tenant in sorted(set(self.granted) | set(self.allocation))
                },
            }
