"""SuperNICSwitch actor: the network between engines and memory nodes, as one SuperNIC.

Request path, control and cross-machine data: engine or instance -> KVClient -> gRPC ->
SuperNICSwitch (this) -> Ray call -> MemoryNode. It serves the kv.proto `MemoryNode` service
as a proxy and the switch.proto `SuperNICSwitch` service (Transfer, Stats, Account). Each
operation goes to the memory node its request names (Alloc and AllocPages with no name:
rendezvous hashing). KV payloads that cross it pass a per-tenant token bucket (over the rate
a call waits, it is never dropped), the DRF fair share (fpga_models/supernic/fair_share.py:
per-epoch allocations enforced by more token buckets) and the sNIC model's network tasks,
which transform the real bytes: checksum + zstd compression on entry, decompression +
checksum verification before the bytes leave. A tenant whose payloads do not compress
skips the compression NTs (one payload in `PROBE_EVERY` still tries).

Engines on a memory node's own machine move pages one-sided, through its shared arena, and
report the bytes afterwards (`account`): the switch prices them as plain switching, in
closed form (no network task pays on a memory bus), and counts them with the rest. Bytes
are counted per tenant.

    switch = ray.remote(SuperNICSwitch).remote({"mem0": node0, "mem1": node1}, secret=secret)
    address = ray.get(switch.address.remote())   # "127.0.0.1:<port>" for KVClient
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any

import grpc
import ray
from ray.exceptions import GetTimeoutError, RayActorError

from actors import cpu_priority
from actors.kv.kv_client import CHANNEL_OPTIONS
from actors.node_address import node_host
from actors.switch.switch_service import RoutingError, SwitchService
from cluster.kv_capability import CapabilityAuthority
from fpga_models.supernic.drf import dominant_share
from fpga_models.supernic.fair_share import FairShare, FairShareConfig, RateLimiter
from fpga_models.supernic.switch import SuperNIC, TenantCounters, Transmission
from tetriserve.v1 import kv_pb2_grpc, switch_pb2_grpc

CHAIN_IN = ("checksum", "compress")  # at the switch's ingress
CHAIN_OUT = ("decompress", "verify")  # before the bytes leave for their destination
MIN_RATIO = 1.01  # compression that saves less than this is not worth its NT time
PROBE_EVERY = 16


@dataclass(slots=True)
class TenantBytes:
    bytes_in: int = 0  # payload from engines towards memory nodes
    bytes_out: int = 0  # payload from memory nodes back to engines
    bytes_on_wire: int = 0  # what those payloads took compressed
    waited_s: float = 0.0  # time held by the rate limiter


class SuperNICSwitch:
    def __init__(
        self,
        memory_nodes: Mapping[str, Any] | None = None,
        *,
        secret: bytes,
        host: str | None = None,
        port: int = 0,
        rate_limit_bytes_per_s: float | None = None,
        snic: SuperNIC | None = None,
        fair_share: FairShareConfig | None = None,
        node_timeout_s: float = 4.0,
        max_workers: int = 8,
    ) -> None:
        cpu_priority.yield_to_engines()
        self.nodes: dict[str, Any] = dict(memory_nodes or {})
        self.authority = CapabilityAuthority(secret)  # checks every rpc's capabilities
        self.snic = snic or SuperNIC()
        self.limiter = RateLimiter(rate_limit_bytes_per_s)
        self.fair = FairShare(self.snic.params, fair_share)
        self._ratios: dict[str, float] = {}  # each tenant's last compression ratio
        self._payloads: Counter[str] = Counter()
        self.node_timeout_s = node_timeout_s
        self.tenants: dict[str, TenantBytes] = {}
        self.ops: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.checksums_verified = 0
        self._lock = threading.Lock()
        self._server = grpc.server(ThreadPoolExecutor(max_workers), options=CHANNEL_OPTIONS)
        service = SwitchService(self)
        kv_pb2_grpc.add_MemoryNodeServicer_to_server(service, self._server)
        switch_pb2_grpc.add_SuperNICSwitchServicer_to_server(service, self._server)
        host = host or node_host()  # dialled by engines on every node
        self._address = f"{host}:{self._server.add_insecure_port(f'{host}:{port}')}"
        self._server.start()

    # --- control ------------------------------------------------------------------------------
    def address(self) -> str:
        return self._address

    def add_memory_node(self, name: str, handle: Any) -> None:
        with self._lock:
            self.nodes[name] = handle

    def set_rate_limit(self, tenant: int | str, bytes_per_s: float | None) -> None:
        """Bytes per second for one tenant's payloads (None: unlimited)."""
        self.limiter.set_rate(str(tenant), bytes_per_s)

    def stop(self, grace_s: float | None = None) -> None:
        self._server.stop(grace_s)

    def ready(self) -> bool:
        return True

    def stats(self) -> dict[str, Any]:
        usage = self.usage()
        with self._lock:
            ops, errors, verified = dict(self.ops), dict(self.errors), self.checksums_verified
        carried = sum(u.bytes_in + u.bytes_out for u, _ in usage.values())
        wire = sum(u.bytes_on_wire for u, _ in usage.values())
        return {
            "tenants": {t: {**asdict(u), "share": share} for t, (u, share) in usage.items()},
            "bytes_carried": carried,
            "bytes_on_wire": wire,
            "compression_ratio": carried / wire if wire else 1.0,
            "checksums_verified": verified,
            "ops": ops,
            "errors": errors,
            "memory_nodes": sorted(self.nodes),
            "fair_share": self.fair.report(),
        }

    def usage(self) -> dict[str, tuple[TenantBytes, float]]:
        """Tenant -> (its byte counts, its dominant share of the switch's traffic)."""
        with self._lock:
            tenants = {tenant: replace(usage) for tenant, usage in self.tenants.items()}
        capacity = {
            "in": sum(u.bytes_in for u in tenants.values()),
            "out": sum(u.bytes_out for u in tenants.values()),
        }
        return {
            tenant: (u, dominant_share({"in": u.bytes_in, "out": u.bytes_out}, capacity))
            for tenant, u in tenants.items()
        }

    # --- datapath, used by the gRPC service's threads ------------------------------------------
    def node(self, name: str) -> Any:
        handle = self.nodes.get(name)
        if handle is None:
            raise RoutingError(f"no memory node named {name!r}")
        return handle

    def place(self, prefix_hash: bytes, tenant: int) -> str:
        """Rendezvous hashing: the node a new page goes to, stable as nodes come and go."""
        if not self.nodes:
            raise RoutingError("the switch has no memory nodes")
        seed = prefix_hash or tenant.to_bytes(8, "little")
        return max(self.nodes, key=lambda name: hashlib.blake2b(name.encode() + seed).digest())

    def call(
        self,
        names: list[str],
        method: str,
        request: bytes,
        deadline_s: float | None,
        capabilities: list[str],
        *,
        skip_unreachable: bool = False,
    ) -> list[bytes | None]:
        """One Ray call per memory node, all at once, within the caller's deadline. With
        `skip_unreachable`, a dead or silent node answers None instead of failing the call."""
        timeout = (
            self.node_timeout_s if deadline_s is None else min(self.node_timeout_s, deadline_s)
        )
        refs = [getattr(self.node(name), method).remote(request, capabilities) for name in names]
        if not skip_unreachable:
            return ray.get(refs, timeout=max(timeout, 0.001))
        end, answers = time.monotonic() + timeout, []
        for name, ref in zip(names, refs, strict=True):
            try:
                answers.append(ray.get(ref, timeout=max(end - time.monotonic(), 0.001)))
            except (RayActorError, GetTimeoutError):
                self.count(method, f"unreachable {name}")
                answers.append(None)
        return answers

    def carry(self, tenant: int | str, payload: bytes, inbound: bool) -> tuple[bytes, float]:
        """A KV payload through the rate limiters and the network tasks: the bytes that leave
        the switch (checked against the checksum taken on entry) and the modelled latency."""
        tenant = str(tenant)
        with self._lock:
            self._payloads[tenant] += 1
            probe = self._payloads[tenant] % PROBE_EVERY == 1
            compress = probe or self._ratios.get(tenant, MIN_RATIO) >= MIN_RATIO
        chain_in, chain_out = (CHAIN_IN, CHAIN_OUT) if compress else (CHAIN_IN[:1], CHAIN_OUT[1:])
        entered = self.transfer(tenant, payload, chain_in, inbound=inbound)
        left = self._transmit(tenant, entered.payload, chain_out, entered.meta)
        with self._lock:
            self.checksums_verified += bool(left.meta.get("crc_ok"))
            if compress:
                self._ratios[tenant] = float(entered.meta.get("compression_ratio", 1.0))
        return left.payload, entered.latency_ns + left.latency_ns

    def transfer(
        self, tenant: int | str, payload: bytes, chain: tuple[str, ...], *, inbound: bool = True
    ) -> Transmission:
        """Runs `payload` through `chain` for `tenant`, after its rate limiters; counts it."""
        tenant = str(tenant)
        waited = self.limiter.reserve(tenant, len(payload)) + self.fair.admit(tenant, len(payload))
        if waited > 0:
            time.sleep(waited)  # the payload waits for its tenant's tokens, never dropped
        sent = self._transmit(tenant, payload, chain)
        wire = len(sent.payload) + sum(len(copy) for copy in sent.replicas)
        self._meter(tenant, len(payload), wire, inbound, waited)
        return sent

    def account(self, tenant: str, to_memory: int, from_memory: int, transfers: int) -> float:
        """KV bytes an engine moved one-sided, through the memory node's shared arena on this
        machine: priced as plain switching (no network task pays on a memory bus) and counted
        as bytes the switch carried, for its tenants' counters and fair shares. Returns the
        modelled time of the transfers."""
        transfers, latency = max(transfers, 1), 0.0
        for nbytes, inbound in ((to_memory, True), (from_memory, False)):
            if nbytes:
                with self._lock:
                    latency += transfers * self.snic.price(tenant, nbytes // transfers)
                self._meter(tenant, nbytes, nbytes, inbound, waited=0.0)
        return latency

    def _meter(self, tenant: str, nbytes: int, wire: int, inbound: bool, waited: float) -> None:
        self.fair.record(tenant, ingress=nbytes, egress=wire)
        with self._lock:
            usage = self.tenants.setdefault(tenant, TenantBytes())
            if inbound:
                usage.bytes_in += nbytes
            else:
                usage.bytes_out += nbytes
            usage.bytes_on_wire += wire
            usage.waited_s += waited

    def _transmit(
        self,
        tenant: str,
        payload: bytes,
        chain: tuple[str, ...],
        meta: dict[str, object] | None = None,
    ) -> Transmission:
        """The sNIC model's datapath; the bytes its NTs took go to the fair-share meter."""
        with self._lock:
            before = defaultdict(float, self.snic.counters.get(tenant, TenantCounters()).task_bytes)
            sent = self.snic.transmit(tenant, payload, chain, meta=meta)
            after = dict(self.snic.counters[tenant].task_bytes)
        self.fair.record(tenant, tasks={task: n - before[task] for task, n in after.items()})
        return sent

    def count(self, op: str, error: str | None = None) -> None:
        with self._lock:
            self.ops[op] += 1
            if error is not None:
                self.errors[f"{op}:{error}"] += 1
