"""A memory node's KV page store: per-tenant address spaces, pages by content key, leases.

Request path: engine -> KVClient -> SuperNICSwitch -> MemoryNode actor -> PageStore -> Memory.
`Memory` is the board underneath (the Clio model in production, a fake in tests); it hands
out large regions, and the store cuts each tenant's regions (arenas) into KV pages with a
per-size free list, so board memory grows with the pages actually stored. A page address is
the board address tagged with the tenant's slot, so an address names its owner: a tenant can
never touch another tenant's page, and every refused request returns no bytes. Content keys
and lease records live in a `PageIndex` (cluster/page_index.py; the memory node injects a
Storm remote hash table): alloc maps a key, free and lease ends unmap keys, a grant records
its lease, each as one index update. Operations return the board's and the index's modelled
latency in nanoseconds. The errors live in cluster/page_errors.py and are re-exported here.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from cluster.kv_pages import PageHandle, PageKey, tenant_id
from cluster.page_errors import (
    BadLengthError,
    CorruptPageError,
    ForeignPageError,
    PageStoreError,
    StorageError,
    UnmappedAddressError,
)
from cluster.page_errors import FreedPageError as FreedPageError
from cluster.page_errors import IndexConflictError as IndexConflictError
from cluster.page_errors import OutOfMemoryError as OutOfMemoryError
from cluster.page_errors import PageAccessError as PageAccessError
from cluster.page_index import IndexUpdate, KeyIndex, LeaseRecord, PageIndex
from cluster.page_space import TAG_SHIFT, Lease, Leases, Page, Spaces

_ADDRESS_MASK = (1 << TAG_SHIFT) - 1
_LOCK_WORD_BYTES = 8


class Memory(Protocol):
    """The board under the store: regions per tenant, and bytes in them."""

    def alloc_region(self, tenant: int, nbytes: int) -> tuple[int, float]: ...
    def free_region(self, tenant: int, address: int) -> float: ...
    def write(self, tenant: int, address: int, data: bytes) -> float: ...
    def read(self, tenant: int, address: int, nbytes: int) -> tuple[bytes, float]: ...
    def lock(self, tenant: int, address: int) -> tuple[bool, float]: ...
    def unlock(self, tenant: int, address: int) -> float: ...
    def fence(self, tenant: int) -> float: ...


@dataclass(slots=True)
class PageStoreStats:
    pages_in_use: int = 0
    bytes_stored: int = 0
    region_bytes: int = 0
    allocs: int = 0
    alloc_hits: int = 0
    frees: int = 0
    reads: int = 0
    writes: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    verified_reads: int = 0
    leases_active: int = 0
    lease_expiries: int = 0


class PageStore:
    def __init__(
        self,
        memory: Memory,
        *,
        node: str = "",
        arena_bytes: int = 4 << 20,
        index: PageIndex | None = None,
    ) -> None:
        self.memory, self.node, self.arena_bytes = memory, node, arena_bytes
        self.index = index if index is not None else KeyIndex()
        self.counters = PageStoreStats()
        self._spaces = Spaces()
        self.leases = Leases()

    # --- pages ------------------------------------------------------------------------------
    def alloc(
        self, tenant: int, key: PageKey | None, length: int
    ) -> tuple[PageHandle, bool, float]:
        """The page of `key` (existed=True), or a new one of `length` bytes."""
        if not 0 < length <= self.arena_bytes:
            raise BadLengthError(f"page of {length} bytes (limit {self.arena_bytes})")
        if key is not None and tenant_id(key.model, key.adapter) != tenant:
            raise ForeignPageError(f"key of {key.model}:{key.adapter} is not tenant {tenant}'s")
        space, latency = self._spaces.open(tenant), 0.0
        if key is not None:
            (address,), latency = self.index.find(tenant, [key])
            page = space.pages.get(address) if address is not None else None
            if page is not None:
                if page.length != length:
                    raise BadLengthError(f"key has a page of {page.length} bytes, not {length}")
                self.counters.alloc_hits += 1
                return self._handle(tenant, page), True, latency
        page, region_ns = self._new_page(tenant, key, length)
        latency += region_ns
        if key is not None:
            try:
                latency += self.index.apply(IndexUpdate(tenant, mapped={key: page.va}))
            except PageStoreError:
                self._drop(tenant, page)  # no handle went out: the page goes with the failure
                raise
        return self._handle(tenant, page), False, latency

    def alloc_pages(
        self, tenant: int, count: int, length: int, lease_id: str, ttl_s: float, now: float
    ) -> tuple[list[PageHandle], float, float]:
        """`count` new pages of `length` bytes for one request, pinned by a new lease (no
        content key: concurrent requests never share or free each other's pages); the
        handles, the lease's expiry and the modelled latency."""
        if not 0 < length <= self.arena_bytes:
            raise BadLengthError(f"page of {length} bytes (limit {self.arena_bytes})")
        if lease_id in self.leases.active:
            raise ForeignPageError(f"lease {lease_id!r} exists already")
        pages, latency = [], 0.0
        try:
            for _ in range(count):
                page, region_ns = self._new_page(tenant, None, length)
                pages.append(page)
                latency += region_ns
            expires = self.grant_lease(lease_id, tenant, [p.va for p in pages], ttl_s, now)
        except PageStoreError:
            for page in pages:
                self._drop(tenant, page)
            raise
        return [self._handle(tenant, page) for page in pages], expires, latency

    def handle(self, tenant: int, va: int) -> PageHandle:
        """The handle of the live page that starts at `va`."""
        page = self._spaces.page(tenant, va, 1)
        if page.va != va:
            raise UnmappedAddressError(f"{va:#x} is inside a page, not its start")
        return self._handle(tenant, page)

    @staticmethod
    def board_address(va: int) -> int:
        """The board address under a page address (without its tenant's tag)."""
        return va & _ADDRESS_MASK

    def write(self, tenant: int, va: int, data: bytes) -> float:
        page = self._spaces.page(tenant, va, len(data))
        latency = self.memory.write(tenant, va & _ADDRESS_MASK, bytes(data))
        page.crc = zlib.crc32(data) if (va, len(data)) == (page.va, page.length) else None
        page.record_write(va - page.va, len(data))
        self.counters.writes += 1
        self.counters.bytes_written += len(data)
        return latency

    def read(self, tenant: int, va: int, length: int) -> tuple[bytes, float]:
        page = self._spaces.page(tenant, va, length)
        data, latency = self.memory.read(tenant, va & _ADDRESS_MASK, length)
        if (va, length) == (page.va, page.length) and page.crc is not None:
            if zlib.crc32(data) != page.crc:
                raise CorruptPageError(f"page {va:#x} of tenant {tenant} fails its crc32")
            self.counters.verified_reads += 1
        self.counters.reads += 1
        self.counters.bytes_read += length
        return data, latency

    def free(self, tenant: int, va: int) -> float:
        page = self._spaces.page(tenant, va, 1)
        if page.va != va:
            raise UnmappedAddressError(f"{va:#x} is inside a page, not its start")
        return self._release(tenant, [page])

    def lookup(self, tenant: int, keys: Sequence[PageKey]) -> list[PageHandle | None]:
        return self.find(tenant, keys)[0]

    def find(self, tenant: int, keys: Sequence[PageKey]) -> tuple[list[PageHandle | None], float]:
        """Handles of the keys' pages, and the index's latency; a handle's length is the bytes
        written so far without a gap, so a reader can tell a page that arrived whole."""
        space = self._spaces.get(tenant)
        if space is None:
            return [None] * len(keys), 0.0
        addresses, latency = self.index.find(tenant, keys)
        found = [space.pages.get(va) if va is not None else None for va in addresses]
        handles = [
            dataclasses.replace(self._handle(tenant, page), length=page.filled)
            if page and page.filled
            else None
            for page in found
        ]
        return handles, latency

    def lock(self, tenant: int, va: int, release: bool = False) -> tuple[bool, float]:
        """Test-and-set (or clear) the 8-byte lock word at `va`."""
        self._spaces.page(tenant, va, _LOCK_WORD_BYTES)
        if release:
            return True, self.memory.unlock(tenant, va & _ADDRESS_MASK)
        return self.memory.lock(tenant, va & _ADDRESS_MASK)

    def fence(self, tenant: int) -> float:
        return self.memory.fence(tenant) if self._spaces.get(tenant) else 0.0

    # --- leases -----------------------------------------------------------------------------
    def grant_lease(
        self, lease_id: str, tenant: int, vas: Sequence[int], ttl_s: float, now: float
    ) -> float:
        """Pins the pages holding `vas` until `now + ttl_s`; granting again extends the lease."""
        pages = [self._spaces.page(tenant, va, 1) for va in vas]
        held = self.leases.active.get(lease_id)
        if held is not None and held.tenant != tenant:
            raise ForeignPageError(f"lease {lease_id!r} belongs to another tenant")
        lease = self.leases.grant(lease_id, tenant, pages, now + ttl_s)
        record = LeaseRecord(tenant, lease.expires_at, len(lease.pages))
        pinned = {page.key: page.va for page in pages if page.key is not None}
        try:
            self.index.apply(IndexUpdate(tenant, pinned=pinned, lease_id=lease_id, lease=record))
        except PageStoreError:
            if held is None:
                self.leases.pop(lease_id)
            raise
        self.counters.leases_active = len(self.leases.active)
        return lease.expires_at

    def release_lease(self, lease_id: str, tenant: int) -> int:
        """Frees the lease's pages that are still live; an unknown or ended lease frees none.
        Another tenant's lease is refused (ForeignPageError) and kept."""
        held = self.leases.active.get(lease_id)
        if held is not None and held.tenant != tenant:
            raise ForeignPageError(f"lease {lease_id} is not tenant {tenant}'s")
        lease = self.leases.pop(lease_id)
        self.counters.leases_active = len(self.leases.active)
        return self._end(lease_id, lease) if lease is not None else 0

    def expire(self, now: float) -> int:
        """Ends every lease whose time has come; returns the pages that freed."""
        ended = self.leases.due(now)
        self.counters.lease_expiries += len(ended)
        self.counters.leases_active = len(self.leases.active)
        return sum(self._end(lease_id, lease) for lease_id, lease in ended)

    def stats(self) -> dict[str, int]:
        return asdict(self.counters)

    def pages_by_tenant(self) -> dict[int, int]:
        return self._spaces.pages_by_tenant()

    # --- plumbing ---------------------------------------------------------------------------
    def _new_page(self, tenant: int, key: PageKey | None, length: int) -> tuple[Page, float]:
        """A page cut from one of the tenant's arenas, or from a new one; the region's cost."""
        space, latency = self._spaces.open(tenant), 0.0
        placed = space.place(length)
        if placed is None:
            base, latency = self.memory.alloc_region(tenant, self.arena_bytes)
            if base >> TAG_SHIFT:
                raise StorageError(f"board address {base:#x} is not below 2**{TAG_SHIFT}")
            self.counters.region_bytes += self.arena_bytes
            arena = space.add_arena(base, self.arena_bytes)
            placed = arena, arena.take(length) or 0
        arena, offset = placed
        page = Page((space.tag << TAG_SHIFT) | (arena.base + offset), length, key, arena, offset)
        space.insert(page)
        self.counters.allocs += 1
        self.counters.pages_in_use += 1
        self.counters.bytes_stored += length
        return page, latency

    def _release(self, tenant: int, pages: list[Page], lease_id: str | None = None) -> float:
        """Frees `pages` (and ends the lease) with one index update that unmaps their keys."""
        unmapped = {page.key: page.va for page in pages if page.key is not None}
        latency = 0.0
        if unmapped or lease_id is not None:
            latency = self.index.apply(IndexUpdate(tenant, unmapped=unmapped, lease_id=lease_id))
        return latency + sum(self._drop(tenant, page) for page in pages)

    def _drop(self, tenant: int, page: Page) -> float:
        emptied = self._spaces.open(tenant).remove(page)
        self.counters.frees += 1
        self.counters.pages_in_use -= 1
        self.counters.bytes_stored -= page.length
        if emptied is None:
            return 0.0
        self.counters.region_bytes -= emptied.size
        return self.memory.free_region(tenant, emptied.base)

    def _end(self, lease_id: str, lease: Lease) -> int:
        """Unpins the lease's pages; frees those that no other lease holds."""
        for page in lease.pages:
            page.pins -= 1
        unpinned = [page for page in lease.pages if page.live and page.pins == 0]
        self._release(lease.tenant, unpinned, lease_id)
        return len(unpinned)

    def _handle(self, tenant: int, page: Page) -> PageHandle:
        return PageHandle(page.key, self.node, tenant, page.va, page.length, page.crc or 0)
