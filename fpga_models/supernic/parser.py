"""The sNIC's ingress parser: per-tenant token buckets, the enforcement point of fair sharing.

Each tenant's bucket fills at the rate DRF last granted it (in Gbps) up to a burst. A packet
is admitted when the bucket holds its bytes; otherwise it waits at the parser until enough
tokens accrue, and is dropped when that wait would exceed the ingress queue limit. A tenant
with no rate set is limited only by the port. Time is simulated nanoseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """Tokens are bytes. `tokens` may go negative: bytes already promised to waiting packets."""

    rate_gbps: float
    burst_bytes: float
    tokens: float = 0.0
    updated_ns: float = 0.0

    def _refill(self, now_ns: float) -> None:
        if now_ns > self.updated_ns:
            gained = (now_ns - self.updated_ns) * self.rate_gbps / 8.0
            self.tokens = min(self.burst_bytes, self.tokens + gained)
            self.updated_ns = now_ns

    def set_rate(self, rate_gbps: float, now_ns: float) -> None:
        self._refill(now_ns)
        self.rate_gbps = rate_gbps

    def admit_at(self, nbytes: int, now_ns: float) -> float:
        """When a packet of `nbytes` arriving at `now_ns` may enter (no tokens are taken)."""
        self._refill(now_ns)
        if self.tokens >= nbytes:
            return now_ns
        if self.rate_gbps <= 0.0:
            return float("inf")
        return now_ns + (nbytes - self.tokens) * 8.0 / self.rate_gbps

    def take(self, nbytes: int, now_ns: float) -> None:
        self._refill(now_ns)
        self.tokens -= nbytes


@dataclass(slots=True)
class TenantParser:
    port_gbps: float
    queue_limit_ns: float
    burst_ns: float = 2_000.0  # a bucket holds this much time's worth of its rate
    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)

    def bucket(self, tenant: str) -> TokenBucket:
        found = self.buckets.get(tenant)
        if found is None:
            found = self.buckets[tenant] = self._new_bucket(self.port_gbps)
        return found

    def set_rate(self, tenant: str, rate_gbps: float, now_ns: float) -> None:
        bucket = self.bucket(tenant)
        bucket.set_rate(rate_gbps, now_ns)
        bucket.burst_bytes = self._burst_bytes(rate_gbps)

    def admit(
        self, tenant: str, nbytes: int, arrival_ns: float, may_drop: bool = True
    ) -> float | None:
        """Admission time of the packet, or None when it is dropped at the parser. The rest of
        a message whose first packet got in is never dropped (`may_drop=False`)."""
        bucket = self.bucket(tenant)
        at = bucket.admit_at(nbytes, arrival_ns)
        if may_drop and at - arrival_ns > self.queue_limit_ns:
            self.drops[tenant] = self.drops.get(tenant, 0) + 1
            return None
        bucket.take(nbytes, arrival_ns)
        return at

    def _new_bucket(self, rate_gbps: float) -> TokenBucket:
        burst = self._burst_bytes(rate_gbps)
        return TokenBucket(rate_gbps=rate_gbps, burst_bytes=burst, tokens=burst)

    def _burst_bytes(self, rate_gbps: float) -> float:
        """A burst of `burst_ns` at the rate, but never less than one jumbo frame."""
        return max(self.burst_ns * rate_gbps / 8.0, 9_000.0)
