"""A SuperNIC (sNIC): the switch that runs tenants' network tasks on the way through.

    snic = SuperNIC(SuperNICParams())
    sent = snic.transmit("tenant-a", kv_bytes, chain=("checksum", "compress"))
    sent.payload, sent.latency_ns, sent.meta["crc32"], sent.meta["compression_ratio"]

Packet path: the tenant endpoint's link -> MAC/PHY -> parser (the tenant's token bucket) ->
core (match-action: the given chain, else the tenant's installed chain, else plain switching) ->
central scheduler (a credit in every NT of the chain) -> NT instances -> egress port (replicas
too) -> MAC/PHY.
The NTs transform the real bytes; time is priced per MTU segment through FIFO servers (ports,
NT instances), so a long message pipelines. A chain this sNIC cannot run goes to a peer that
can, paying one more trip through a datapath. Per-tenant counters feed fair sharing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from fpga_models.net import Framing, serialization_ns
from fpga_models.supernic.params import SuperNICParams
from fpga_models.supernic.parser import TenantParser
from fpga_models.supernic.scheduler import CreditScheduler, TaskInstance
from fpga_models.supernic.tasks import PRIMARY, Packet, task_factories


class Transmission(NamedTuple):
    payload: bytes
    latency_ns: float
    replicas: tuple[bytes, ...]
    meta: dict[str, object]
    redirected_to: str | None = None


class Dropped(RuntimeError):
    """The tenant's rate limiter would hold the packet longer than the ingress queue allows."""


@dataclass(slots=True)
class TenantCounters:
    ingress_bytes: int = 0
    egress_wire_bytes: int = 0  # what the egress port carried: framing and replicas included
    packets: int = 0
    task_bytes: dict[str, float] = field(default_factory=dict)
    resident_byte_ns: float = 0.0  # bytes x time spent inside: packet-store occupancy


class SuperNIC:
    def __init__(
        self,
        params: SuperNICParams | None = None,
        *,
        name: str = "snic0",
        peers: Sequence[SuperNIC] = (),
    ) -> None:
        self.params = params or SuperNICParams()
        self.name = name
        self.peers = list(peers)
        self.framing = Framing(mtu_bytes=self.params.mtu_bytes)
        self.parser = TenantParser(self.params.port_gbps, self.params.ingress_queue_ns)
        self.scheduler = CreditScheduler(self.params.credits_per_task)
        self._factories = task_factories(self.params.compression_level)
        for task, count in self.params.instances.items():
            for _ in range(count):
                self.add_instance(task)
        self.match_action: dict[str, tuple[str, ...]] = {}
        self.counters: dict[str, TenantCounters] = {}
        self.clock_ns = 0.0
        self._ingress_free_ns: dict[str, float] = {}  # each tenant's endpoint has its own link
        self._egress_free_ns = 0.0

    def add_instance(self, task: str) -> None:
        spec = self.params.tasks[task]
        self.scheduler.add_instance(TaskInstance(task, self._factories[task](), spec))

    def install_chain(self, tenant: str, chain: Sequence[str]) -> None:
        """A match-action rule: this tenant's traffic runs `chain` unless a call names one."""
        self.match_action[tenant] = tuple(chain)

    def transmit(
        self,
        tenant: str,
        payload: bytes,
        chain: Sequence[str] | None = None,
        *,
        meta: dict[str, object] | None = None,
        at_ns: float | None = None,
    ) -> Transmission:
        """Send `payload` through the datapath (from `at_ns`, default: right after the previous
        message); raises `Dropped` if the tenant's rate limiter drops it."""
        arrival = self.clock_ns if at_ns is None else at_ns
        parsed = self.receive(tenant, len(payload), arrival)
        if parsed is None:
            raise Dropped(f"{self.name}: tenant {tenant!r} over its rate, packet dropped")
        return self.forward(tenant, payload, chain, parsed, arrival, meta=meta)

    def price(self, tenant: str, nbytes: int) -> float:
        """The latency of a message through plain switching (no network task) that meets an
        idle datapath: what `transmit(tenant, payload, chain=())` charges such a message,
        in closed form, with no work per segment. Counts it to the tenant.

        Full segments enter and leave back to back; a shorter last one enters sooner than
        the egress port is free for it."""
        p, framing = self.params, self.framing
        full, rest = divmod(max(nbytes, 0), framing.max_payload_bytes)
        full_ns = self._wire_ns([framing.max_payload_bytes])
        fixed = 2 * p.mac_phy_ns + p.core_ns + p.scheduler_ns
        egress = full * framing.wire_bytes(framing.max_payload_bytes)
        latency = full * full_ns + fixed
        if rest or full == 0:
            rest_ns = self._wire_ns([rest])
            latency += rest_ns + (max(full_ns, rest_ns) if full else rest_ns)
            egress += framing.wire_bytes(rest)
        else:
            latency += full_ns
        self._count(tenant, nbytes, egress, (), [], latency)
        return latency

    def receive(self, tenant: str, nbytes: int, arrival_ns: float) -> list[float] | None:
        """Ingress half of the datapath: the message's segments enter the tenant's link back
        to back, then wait for the tenant's tokens. Returns when each segment leaves the
        parser, or None if the parser drops the message."""
        segments = self.framing.payload_split(nbytes)
        self.clock_ns = max(self.clock_ns, arrival_ns + self._wire_ns(segments))
        frame_ns = {size: self._wire_ns([size]) for size in set(segments)}
        mac_phy_ns, admit = self.params.mac_phy_ns, self.parser.admit
        parsed: list[float] = []
        link_free = self._ingress_free_ns.get(tenant, 0.0)
        try:
            for segment in segments:
                link_free = max(link_free, arrival_ns) + frame_ns[segment]
                admitted = admit(tenant, segment, link_free + mac_phy_ns, may_drop=not parsed)
                if admitted is None:
                    return None
                parsed.append(admitted)
        finally:
            self._ingress_free_ns[tenant] = link_free
        return parsed

    def forward(
        self,
        tenant: str,
        payload: bytes,
        chain: Sequence[str] | None,
        parsed: list[float],
        arrival_ns: float,
        *,
        meta: dict[str, object] | None = None,
    ) -> Transmission:
        """The rest of the datapath for a message `receive` admitted: match-action, scheduler,
        NT chain on the real bytes, egress."""
        chain = tuple(self.match_action.get(tenant, ()) if chain is None else chain)
        segments = self.framing.payload_split(len(payload))
        if not self.scheduler.can_run(chain):
            return self._redirect(tenant, payload, chain, meta, arrival_ns, segments, parsed)
        packets = [Packet(tenant, payload, PRIMARY, dict(meta or {}))]
        entering: list[int] = []
        for task in chain:
            entering.append(sum(len(packet.payload) for packet in packets))
            instance = self.scheduler.instances[task][0]
            packets = [out for packet in packets for out in instance.task.process(packet)]
        outputs = [len(packet.payload) for packet in packets]
        done, egress = self._through_chain(chain, segments, parsed, entering, outputs)
        self._count(tenant, len(payload), egress, chain, entering, done - arrival_ns)
        primary = packets[0]
        replicas = tuple(packet.payload for packet in packets[1:])
        return Transmission(primary.payload, done - arrival_ns, replicas, primary.meta, None)

    def _through_chain(
        self,
        chain: tuple[str, ...],
        segments: list[int],
        parsed: list[float],
        entering: list[int],
        outputs: list[int],
    ) -> tuple[float, int]:
        """When the last segment has left the egress port, and the bytes the port carried.
        Each segment shrinks or grows through the chain as the whole message did, and leaves
        once per output packet (a replica is a second frame)."""
        p = self.params
        size = sum(segments)
        shares = {seg: self._segment_share(seg, size, entering, outputs) for seg in set(segments)}
        reserve, hold = self.scheduler.reserve, self.scheduler.hold
        done, egress_wire = parsed[-1], 0
        for segment, parsed_ns in zip(segments, parsed, strict=True):
            task_bytes, wire = shares[segment]
            start, instances = reserve(chain, parsed_ns + p.core_ns + p.scheduler_ns)
            for instance, nbytes in zip(instances, task_bytes, strict=True):
                start = instance.serve(start, nbytes)
                hold(instance, start)
            egress_wire += wire
            self._egress_free_ns = max(self._egress_free_ns, start) + serialization_ns(
                wire, p.port_gbps
            )
            done = self._egress_free_ns + p.mac_phy_ns
        return done, egress_wire

    def _segment_share(
        self, segment: int, size: int, entering: list[int], outputs: list[int]
    ) -> tuple[list[int], int]:
        """A segment's bytes into each NT of the chain, and the egress wire bytes of its frames,
        in proportion to what the whole message took."""
        task_bytes = [round(segment * bytes_in / size) if size else 0 for bytes_in in entering]
        wire = sum(
            self.framing.wire_bytes(round(segment * out / size) if size else 0) for out in outputs
        )
        return task_bytes, wire

    def _redirect(
        self,
        tenant: str,
        payload: bytes,
        chain: tuple[str, ...],
        meta: dict[str, object] | None,
        arrival: float,
        segments: list[int],
        parsed: list[float],
    ) -> Transmission:
        """Forward to a peer that runs the whole chain: through this datapath without NTs."""
        p = self.params
        peer = next((peer for peer in self.peers if peer.scheduler.can_run(chain)), None)
        if peer is None:
            raise LookupError(f"{self.name}: no NT instance or peer for chain {chain}")
        forwarded, egress = self._through_chain((), segments, parsed, [], [len(payload)])
        sent = peer.transmit(tenant, payload, chain, meta=meta, at_ns=forwarded + p.peer_link_ns)
        self._count(tenant, len(payload), egress, (), [], forwarded - arrival)
        latency = forwarded + p.peer_link_ns + sent.latency_ns - arrival
        return sent._replace(latency_ns=latency, redirected_to=peer.name)

    def _wire_ns(self, segments: list[int]) -> float:
        wire = sum(self.framing.wire_bytes(segment) for segment in segments)
        return serialization_ns(wire, self.params.port_gbps)

    def _count(
        self,
        tenant: str,
        ingress: int,
        egress_wire: int,
        chain: tuple[str, ...],
        entering: list[int],
        latency_ns: float,
    ) -> None:
        counters = self.counters.setdefault(tenant, TenantCounters())
        counters.ingress_bytes += ingress
        counters.egress_wire_bytes += egress_wire
        counters.packets += 1
        counters.resident_byte_ns += ingress * latency_ns
        for task, nbytes in zip(chain, entering, strict=True):
            counters.task_bytes[task] = counters.task_bytes.get(task, 0.0) + nbytes
