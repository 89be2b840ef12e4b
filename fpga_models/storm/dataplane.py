"""Storm's dataplane: clients reach remote data structures with a one-sided read first and an
RPC only when the read cannot resolve the lookup.

A data structure plugs in three functions, as `RemoteHashTable` does here:
  lookup_start(key)        -> where to read (owner node, address, length): a guess
  lookup_end(key, bytes)   -> the item, "absent", or "needs an RPC" (e.g. a pointer chase);
                              items learned through an RPC are cached so the next lookup
                              reads them directly
  rpc_handler(request)     -> the owner-side lookup / lock / commit / unlock
`StormClient` runs that protocol over modelled RDMA NICs (connection-state caches) and counts
reads, RPCs and cache hits; every call returns its answer and its latency.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from fpga_models.storm.hashtable import HashTableRegion, Item, owner_node
from fpga_models.storm.latency import StormLatency
from fpga_models.storm.nic import RdmaNic
from fpga_models.storm.params import StormParams
from fpga_models.timed import Timed

RpcAnswer = Item | bool | None


@dataclass(frozen=True, slots=True)
class RpcRequest:
    """A message to an owner: get, lock (if unchanged since `expected_version`), commit
    (install `value`, bump the version, unlock) or unlock."""

    op: str
    key: int
    expected_version: int | None = None
    value: bytes = b""

    @property
    def nbytes(self) -> int:
        return 16 + len(self.value)  # op, key, then the value


class Lookup(Enum):
    ABSENT = "absent"
    NEEDS_RPC = "needs_rpc"


@dataclass(frozen=True, slots=True)
class ReadPlan:
    node: int
    address: int
    nbytes: int


class RemoteHashTable:
    """A hash table partitioned over nodes, one `HashTableRegion` per node."""

    def __init__(self, regions: list[HashTableRegion]) -> None:
        self.regions = regions
        self.location_cache: dict[int, tuple[int, int]] = {}  # key -> (node, item address)

    def owner(self, key: int) -> int:
        return owner_node(key, len(self.regions))

    def lookup_start(self, key: int) -> ReadPlan:
        cached = self.location_cache.get(key)
        if cached is not None:
            return ReadPlan(cached[0], cached[1], self.regions[cached[0]].item_bytes)
        node = self.owner(key)
        region = self.regions[node]
        return ReadPlan(node, region.bucket_address(key), region.bucket_bytes)

    def lookup_end(self, key: int, plan: ReadPlan, raw: bytes) -> Item | Lookup:
        region = self.regions[plan.node]
        if key in self.location_cache:
            item = region.decode_item(raw, plan.address)
            if item is not None and item.key == key:
                return item
            del self.location_cache[key]  # moved or deleted: ask the owner
            return Lookup.NEEDS_RPC
        for address in region.slot_addresses(plan.address):
            offset = address - plan.address
            item = region.decode_item(raw[offset : offset + region.item_bytes], address)
            if item is not None and item.key == key:
                return item
        has_overflow = int.from_bytes(raw[:8], "little") != 0
        return Lookup.NEEDS_RPC if has_overflow else Lookup.ABSENT

    def rpc_handler(self, node: int, request: RpcRequest) -> tuple[RpcAnswer, int]:
        """Owner side: returns the answer and the dependent memory accesses it made.
        get -> Item | None; lock -> bool (taken); commit, unlock -> None."""
        op, key = request.op, request.key
        region = self.regions[node]
        if op == "get":
            return region.locate(key)
        if op == "lock":
            return region.try_lock(key, request.expected_version)
        if op == "commit":
            return None, region.commit(key, request.value)
        if op == "unlock":
            return None, region.unlock(key)
        raise ValueError(f"unknown RPC {op!r}")

    def remember(self, key: int, node: int, item: Item) -> None:
        self.location_cache[key] = (node, item.address)


class StormCluster:
    """Nodes, each with a table partition and an RDMA NIC, on one fabric."""

    def __init__(
        self, params: StormParams | None = None, *, nodes: int = 2, buckets_per_node: int = 256
    ) -> None:
        self.params = params or StormParams()
        slots = buckets_per_node * self.params.slots_per_bucket
        self.regions = [
            HashTableRegion(self.params, buckets_per_node, overflow_items=slots)
            for _ in range(nodes)
        ]
        self.nics = [RdmaNic(self.params) for _ in range(nodes)]
        self.latency = StormLatency(self.params)

    def insert(self, key: int, value: bytes) -> None:
        """Load data at its owner (not a remote operation)."""
        self.regions[owner_node(key, len(self.regions))].insert(key, value)

    def client(self, node: int, thread: int = 0) -> StormClient:
        return StormClient(self, node, thread)


@dataclass(slots=True)
class ClientStats:
    reads: int = 0
    rpcs: int = 0
    resolved_by_read: int = 0


class StormClient:
    def __init__(self, cluster: StormCluster, node: int, thread: int) -> None:
        self.cluster = cluster
        self.node = node
        self.thread = thread
        self.table = RemoteHashTable(cluster.regions)
        self.stats = ClientStats()

    def get(self, key: int) -> Timed[Item | None]:
        """Read first; fall back to an RPC only when the read cannot resolve the key."""
        plan = self.table.lookup_start(key)
        raw, elapsed = self.read(plan.node, plan.address, plan.nbytes)
        found = self.table.lookup_end(key, plan, raw)
        if isinstance(found, Item):
            self.stats.resolved_by_read += 1
            return Timed(found, elapsed)
        if found is Lookup.ABSENT:
            self.stats.resolved_by_read += 1
            return Timed(None, elapsed)
        node = self.table.owner(key)
        item, rpc_ns = self.rpc(node, RpcRequest("get", key))
        if isinstance(item, Item):
            self.table.remember(key, node, item)
            return Timed(item, elapsed + rpc_ns)
        return Timed(None, elapsed + rpc_ns)

    def read(self, node: int, address: int, nbytes: int) -> Timed[bytes]:
        """One-sided RDMA read of `nbytes` at `address` in `node`'s region."""
        self.stats.reads += 1
        miss_ns = self._connection_misses(node)
        raw = self.cluster.regions[node].read(address, nbytes)
        return Timed(raw, self.cluster.latency.read_ns(nbytes, miss_ns))

    def rpc(self, node: int, request: RpcRequest) -> Timed[RpcAnswer]:
        """A request/response RPC to `node`'s owner-side handler (see `rpc_handler`)."""
        self.stats.rpcs += 1
        miss_ns = self._connection_misses(node)
        answer, accesses = self.table.rpc_handler(node, request)
        response_bytes = self.cluster.params.item_bytes if request.op == "get" else 8
        latency = self.cluster.latency.rpc_ns(request.nbytes, response_bytes, accesses, miss_ns)
        return Timed(answer, latency)

    def _connection_misses(self, node: int) -> float:
        connection = (self.node, self.thread, node)
        return self.cluster.nics[self.node].touch(connection) + self.cluster.nics[node].touch(
            connection
        )
