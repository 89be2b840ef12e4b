"""A memory node's page index as a Storm remote hash table, changed by Storm transactions.

Request path: MemoryNode actor -> PageStore -> StormPageIndex (this) -> fpga_models.storm.
The table is one region of real bytes on the memory node. A lookup reads the key's home bucket
one-sided (`lookup_start`, `lookup_end`); only a key that may sit in the bucket's overflow
chain costs an RPC to the owner (then cached). Every change (alloc maps a key, free and lease
ends unmap keys, a grant records its lease) is one OCC transaction: one-sided reads, write set
locked by RPC, read set validated by reads, commit RPCs that write and unlock. The owner side
adds an insert RPC (a vacant item for a new key, before its transaction) and removes an item
whose commit wrote it vacant. Calls return modelled latency; `stats` counts reads, RPCs,
commits and aborts.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Generator, Sequence

from cluster.kv_pages import PageKey
from cluster.page_errors import IndexConflictError, OutOfMemoryError, StorageError
from cluster.page_index import IndexUpdate, LeaseRecord
from fpga_models.storm import dataplane, hashtable
from fpga_models.storm.dataplane import RpcAnswer, RpcRequest
from fpga_models.storm.params import StormParams
from fpga_models.storm.transactions import OccTransaction, Step, attempt

VACANT = b""  # an item's value before its first commit; committing it removes the item
_NEXT_OFFSET = 16  # of an item's overflow pointer: after its key and version word
_PAGE = struct.Struct("<B16sQQ")  # kind, key check, tenant, page address
_LEASE = struct.Struct("<B16sQdI")  # kind, key check, tenant, expiry (unix s), pages pinned
_PAGE_KIND, _LEASE_KIND = 1, 2
MAX_ATTEMPTS = 100

TableKey = tuple[int, bytes]  # the table's u64 key, and 16 more bytes of its digest to check


def _table_key(*parts: bytes) -> TableKey:
    framed = b"".join(len(part).to_bytes(4, "little") + part for part in parts)
    digest = hashlib.blake2b(framed, digest_size=24).digest()
    return int.from_bytes(digest[:8], "little") or 1, digest[8:]


def page_table_key(tenant: int, key: PageKey) -> TableKey:
    tenant_bytes, block = tenant.to_bytes(8, "little"), key.block_index.to_bytes(4, "little")
    model, adapter = key.model.encode(), key.adapter.encode()
    return _table_key(b"page", tenant_bytes, model, adapter, key.prefix_hash, block)


def lease_table_key(lease_id: str) -> TableKey:
    return _table_key(b"lease", lease_id.encode())


class PageTableRegion(hashtable.HashTableRegion):
    """The table's region, with removal: a home slot is cleared in place; an overflow item is
    unlinked from its chain and kept for the next key whose home bucket is full. A cleared
    item keeps its version word and the next item at that address starts above it, so a
    version read once never comes back at the same address (no ABA under OCC)."""

    def __init__(self, params: StormParams, buckets: int, overflow_items: int) -> None:
        super().__init__(params, buckets, overflow_items)
        self.spare: list[int] = []

    @property
    def capacity(self) -> int:
        return self.buckets * self.params.slots_per_bucket

    def insert(self, key: int, value: bytes) -> int:
        bucket = self.bucket_address(key)
        free = [a for a in self.slot_addresses(bucket) if self._item_at(a) is None]
        if free or not self.spare:
            was = self._version(free[0]) if free else 0  # a new overflow item was never used
            address = super().insert(key, value)
        else:
            if self.items + 1 > self.params.max_load_factor * self.capacity:
                raise hashtable.TableFull(f"{self.items + 1} items exceed the load factor")
            address = self.spare.pop()
            was = self._version(address)
            (head,) = hashtable.OVERFLOW_POINTER.unpack_from(self.region, bucket)
            hashtable.OVERFLOW_POINTER.pack_into(self.region, bucket, address)
            self._store(address, key, 0, head, value)
        self._set_word(address, was + 2)
        return address

    def remove(self, key: int) -> int:
        """Takes the key's item out; returns the dependent accesses made."""
        bucket = self.bucket_address(key)
        for address in self.slot_addresses(bucket):
            if hashtable.ITEM_HEADER.unpack_from(self.region, address)[0] == key:
                self._clear(address)
                return 1
        link, accesses = bucket, 1
        (address,) = hashtable.OVERFLOW_POINTER.unpack_from(self.region, bucket)
        while address:
            accesses += 1
            found, _, following = hashtable.ITEM_HEADER.unpack_from(self.region, address)
            if found == key:
                hashtable.OVERFLOW_POINTER.pack_into(self.region, link, following)
                self._clear(address)
                self.spare.append(address)
                return accesses
            link, address = address + _NEXT_OFFSET, following
        return accesses

    def _version(self, address: int) -> int:
        return hashtable.ITEM_HEADER.unpack_from(self.region, address)[1] & ~hashtable.LOCK_BIT

    def _clear(self, address: int) -> None:
        """Key, next pointer and value to zero; the version word stays."""
        hashtable.ITEM_HEADER.pack_into(self.region, address, 0, self._version(address), 0)
        start = address + hashtable.ITEM_HEADER.size
        self.region[start : address + self.item_bytes] = bytes(self.value_bytes)
        self.items -= 1


class PageTable(dataplane.RemoteHashTable):
    """The owner's RPC handler with two more cases: insert a vacant item for a new key, and
    remove an item whose commit wrote it vacant."""

    def rpc_handler(self, node: int, request: RpcRequest) -> tuple[RpcAnswer, int]:
        region = self.regions[node]
        assert isinstance(region, PageTableRegion)
        if request.op == "insert":
            item, accesses = region.locate(request.key)
            if item is None:
                region.insert(request.key, VACANT)
            return item is None, accesses
        answer, accesses = super().rpc_handler(node, request)
        if request.op == "commit" and request.value == VACANT:
            accesses += region.remove(request.key)
        return answer, accesses


class StormPageIndex:
    def __init__(self, params: StormParams | None = None, *, buckets: int = 16384) -> None:
        self.node = dataplane.StormCluster(params, nodes=1, buckets_per_node=1)
        self.region = PageTableRegion(self.node.params, buckets, overflow_items=buckets)
        self.node.regions[0] = self.region  # the memory node's one region: the page table
        self.client = dataplane.StormClient(self.node, node=0, thread=0)
        self.client.table = PageTable(self.node.regions)
        self.lookups = self.lookup_rpcs = self.commits = self.aborts = 0
        self.modelled_ns = 0.0

    def find(self, tenant: int, keys: Sequence[PageKey]) -> tuple[list[int | None], float]:
        """Each key's page address: one one-sided read, an RPC only when that cannot say."""
        found, latency, rpcs = [], 0.0, self.client.stats.rpcs
        for key in keys:
            table_key, check = page_table_key(tenant, key)
            item, elapsed = self.client.get(table_key)
            latency += elapsed
            found.append(_page_address(item.value if item else VACANT, check))
        self.lookups += len(keys)
        self.lookup_rpcs += self.client.stats.rpcs - rpcs
        self.modelled_ns += latency
        return found, latency

    def apply(self, update: IndexUpdate) -> float:
        """The whole update as one transaction; IndexConflictError if it contradicts the table."""
        tenant = update.tenant
        expected = {page_table_key(tenant, key): va for key, va in update.expected().items()}
        written = {}
        for key, va in update.after().items():
            table_key, check = page_table_key(tenant, key)
            written[table_key] = VACANT if va is None else _PAGE.pack(_PAGE_KIND, check, tenant, va)
        lease_key = lease_table_key(update.lease_id) if update.lease_id is not None else None
        new_keys = [page_table_key(tenant, key)[0] for key in update.mapped]
        new_keys += [lease_key[0]] if lease_key is not None and update.lease is not None else []
        latency = sum(self._reserve(table_key) for table_key in new_keys)

        def body(tx: OccTransaction) -> Step:
            for (table_key, check), va in expected.items():
                if _page_address((yield from _read(tx, table_key)), check) != va:
                    raise IndexConflictError(f"index key {table_key:#x} does not map to {va}")
            for table_key, value in written.items():
                tx.write(table_key, value)
            if lease_key is not None:
                yield from _write_lease(tx, lease_key, tenant, update.lease)

        latency += self.transact(body)
        self.modelled_ns += latency
        return latency

    def transact(self, body: Callable[[OccTransaction], Step]) -> float:
        """Runs `body` as an OCC transaction until it commits; the latency of every attempt."""
        total = 0.0
        for _ in range(MAX_ATTEMPTS):
            committed, _, latency = _finish(attempt(self.client, body, None))
            total += latency
            if committed:
                self.commits += 1
                return total
            self.aborts += 1
        raise StorageError(f"index transaction did not commit in {MAX_ATTEMPTS} attempts")

    def stats(self) -> dict[str, float]:
        return {
            "entries": self.region.items,
            "load": self.region.items / self.region.capacity,
            "lookups": self.lookups,
            "lookup_rpcs": self.lookup_rpcs,
            "one_sided_reads": self.client.stats.reads,
            "rpcs": self.client.stats.rpcs,
            "tx_commits": self.commits,
            "tx_aborts": self.aborts,
            "modelled_ns": self.modelled_ns,
        }

    def _reserve(self, table_key: int) -> float:
        """An insert RPC: the owner gives the key a vacant item unless it has one."""
        try:
            return self.client.rpc(0, RpcRequest("insert", table_key)).latency_ns
        except hashtable.TableFull as error:
            raise OutOfMemoryError(f"the page index is full: {error}") from error


def _page_address(value: bytes, check: bytes) -> int | None:
    if len(value) < _PAGE.size or value[0] != _PAGE_KIND:
        return None
    _, stored, _, va = _PAGE.unpack_from(value)
    return va if stored == check else None


def _read(tx: OccTransaction, table_key: int) -> Generator[None, None, bytes]:
    """The item's value as this transaction sees it; a key with no item reads as vacant."""
    try:
        return (yield from tx.read(table_key))
    except KeyError:
        return VACANT


def _write_lease(tx: OccTransaction, key: TableKey, tenant: int, lease: LeaseRecord | None) -> Step:
    """Sets the lease record (or, with no record, removes it); another tenant's is refused."""
    table_key, check = key
    value = yield from _read(tx, table_key)
    if value and value[0] == _LEASE_KIND and _LEASE.unpack_from(value)[2] != tenant:
        raise IndexConflictError(f"lease record {table_key:#x} belongs to another tenant")
    if lease is not None:
        tx.write(table_key, _LEASE.pack(_LEASE_KIND, check, tenant, lease.expires_at, lease.pages))
    elif value:
        tx.write(table_key, VACANT)


def _finish(steps: Step) -> tuple[bool, object, float]:
    """Runs one transaction attempt to its end: nothing interleaves with it in this actor."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
