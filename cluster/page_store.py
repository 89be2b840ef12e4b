"""A memory node's KV page store: per-tenant address spaces, pages by content key, leases.

Request path: engine -> KVClient -> SuperNICSwitch -> MemoryNode actor -> PageStore -> Memory.
`Memory` is the board underneath (the Clio model in production, a fake in tests); it hands
out large regions, and the store cuts each tenant's regions (arenas) into KV pages with a
per-size free list, so board memory grows with the pages actually stored. A page address is
the board address tagged with the tenant's slot, so an address names its owner: a tenant can
never touch another tenant's page, and every refused request returns no bytes. Every data
operation returns the board's modelled latency in nanoseconds.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from cluster.kv_pages import PageHandle, PageKey, tenant_id
from cluster.page_space import AddressSpace, Lease, Leases, Page

_TAG_SHIFT = 46  # board addresses stay below 2**46; the tenant's slot sits above them
_ADDRESS_MASK = (1 << _TAG_SHIFT) - 1
_LOCK_WORD_BYTES = 8


class PageStoreError(Exception):
    """Base of every error the store answers with; a failed request returns no bytes."""


class PageAccessError(PageStoreError):
    """The request touches memory its tenant has no right to."""


class UnmappedAddressError(PageAccessError):
    """The address is in no page of this tenant: forged, or never allocated."""


class ForeignPageError(PageAccessError):
    """The address (or content key) belongs to another tenant."""


class FreedPageError(PageAccessError):
    """The address was in a page that has been freed."""


class BadLengthError(PageAccessError):
    """A length that is not positive or runs past the end of its page."""


class OutOfMemoryError(PageStoreError):
    """The board has no room left for another region."""


class StorageError(PageStoreError):
    """The board failed a request it should have served."""


class CorruptPageError(PageStoreError):
    """A page read back whole no longer matches the checksum of its last whole write."""


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
    def __init__(self, memory: Memory, *, node: str = "", arena_bytes: int = 4 << 20) -> None:
        self.memory, self.node, self.arena_bytes = memory, node, arena_bytes
        self.counters = PageStoreStats()
        self._spaces: dict[int, AddressSpace] = {}
        self._owners: dict[int, int] = {}  # slot tag -> tenant
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
        space = self._space(tenant)
        page = space.keys.get(key) if key is not None else None
        if page is not None:
            if page.length != length:
                raise BadLengthError(f"key has a page of {page.length} bytes, not {length}")
            self.counters.alloc_hits += 1
            return self._handle(tenant, page), True, 0.0
        placed, latency = space.place(length), 0.0
        if placed is None:
            base, latency = self.memory.alloc_region(tenant, self.arena_bytes)
            if base >> _TAG_SHIFT:
                raise StorageError(f"board address {base:#x} is not below 2**{_TAG_SHIFT}")
            self.counters.region_bytes += self.arena_bytes
            arena = space.add_arena(base, self.arena_bytes)
            placed = arena, arena.take(length) or 0
        arena, offset = placed
        page = Page((space.tag << _TAG_SHIFT) | (arena.base + offset), length, key, arena, offset)
        space.insert(page)
        self.counters.allocs += 1
        self.counters.pages_in_use += 1
        self.counters.bytes_stored += length
        return self._handle(tenant, page), False, latency

    def write(self, tenant: int, va: int, data: bytes) -> float:
        page = self._page(tenant, va, len(data))
        latency = self.memory.write(tenant, va & _ADDRESS_MASK, bytes(data))
        page.crc = zlib.crc32(data) if (va, len(data)) == (page.va, page.length) else None
        page.record_write(va - page.va, len(data))
        self.counters.writes += 1
        self.counters.bytes_written += len(data)
        return latency

    def read(self, tenant: int, va: int, length: int) -> tuple[bytes, float]:
        page = self._page(tenant, va, length)
        data, latency = self.memory.read(tenant, va & _ADDRESS_MASK, length)
        if (va, length) == (page.va, page.length) and page.crc is not None:
            if zlib.crc32(data) != page.crc:
                raise CorruptPageError(f"page {va:#x} of tenant {tenant} fails its crc32")
            self.counters.verified_reads += 1
        self.counters.reads += 1
        self.counters.bytes_read += length
        return data, latency

    def free(self, tenant: int, va: int) -> float:
        page = self._page(tenant, va, 1)
        if page.va != va:
            raise UnmappedAddressError(f"{va:#x} is inside a page, not its start")
        return self._release(tenant, page)

    def lookup(self, tenant: int, keys: Sequence[PageKey]) -> list[PageHandle | None]:
        """Handles of the keys' pages; a handle's length is the bytes written so far without
        a gap, so a reader can tell a page that arrived whole from one that did not."""
        space = self._spaces.get(tenant)
        found = [space.keys.get(key) if space else None for key in keys]
        return [
            dataclasses.replace(self._handle(tenant, page), length=page.filled)
            if page and page.filled
            else None
            for page in found
        ]

    def lock(self, tenant: int, va: int, release: bool = False) -> tuple[bool, float]:
        """Test-and-set (or clear) the 8-byte lock word at `va`."""
        self._page(tenant, va, _LOCK_WORD_BYTES)
        if release:
            return True, self.memory.unlock(tenant, va & _ADDRESS_MASK)
        return self.memory.lock(tenant, va & _ADDRESS_MASK)

    def fence(self, tenant: int) -> float:
        return self.memory.fence(tenant) if tenant in self._spaces else 0.0

    # --- leases -----------------------------------------------------------------------------
    def grant_lease(
        self, lease_id: str, tenant: int, vas: Sequence[int], ttl_s: float, now: float
    ) -> float:
        """Pins the pages holding `vas` until `now + ttl_s`; granting again extends the lease."""
        pages = [self._page(tenant, va, 1) for va in vas]
        held = self.leases.active.get(lease_id)
        if held is not None and held.tenant != tenant:
            raise ForeignPageError(f"lease {lease_id!r} belongs to another tenant")
        lease = self.leases.grant(lease_id, tenant, pages, now + ttl_s)
        self.counters.leases_active = len(self.leases.active)
        return lease.expires_at

    def release_lease(self, lease_id: str) -> int:
        """Frees the lease's pages that are still live; an unknown or ended lease frees none."""
        lease = self.leases.pop(lease_id)
        self.counters.leases_active = len(self.leases.active)
        return self._end(lease) if lease is not None else 0

    def expire(self, now: float) -> int:
        """Ends every lease whose time has come; returns the pages that freed."""
        ended = self.leases.due(now)
        self.counters.lease_expiries += len(ended)
        self.counters.leases_active = len(self.leases.active)
        return sum(self._end(lease) for lease in ended)

    def stats(self) -> dict[str, int]:
        return asdict(self.counters)

    # --- plumbing ---------------------------------------------------------------------------
    def _space(self, tenant: int) -> AddressSpace:
        space = self._spaces.get(tenant)
        if space is None:
            tag = len(self._owners) + 1
            if tag >= 1 << (64 - _TAG_SHIFT):
                raise OutOfMemoryError("no address-space slot left for another tenant")
            space = self._spaces[tenant] = AddressSpace(tag)
            self._owners[tag] = tenant
        return space

    def _page(self, tenant: int, va: int, length: int) -> Page:
        """The live page of `tenant` holding [va, va + length), or a clear refusal."""
        space = self._spaces.get(tenant)
        if space is None or va >> _TAG_SHIFT != space.tag:
            owner = self._spaces.get(self._owners.get(va >> _TAG_SHIFT, -1))
            if owner is not None and owner.page_at(va) is not None:
                raise ForeignPageError(f"{va:#x} belongs to another tenant than {tenant}")
            raise UnmappedAddressError(f"{va:#x} is in no page of tenant {tenant}")
        page = space.page_at(va)
        if page is None:
            if space.was_freed(va):
                raise FreedPageError(f"{va:#x} of tenant {tenant} was freed")
            raise UnmappedAddressError(f"{va:#x} is in no page of tenant {tenant}")
        if length <= 0 or va + length > page.va + page.length:
            raise BadLengthError(f"{length} bytes at {va:#x} leave the page at {page.va:#x}")
        return page

    def _release(self, tenant: int, page: Page) -> float:
        emptied = self._spaces[tenant].remove(page)
        self.counters.frees += 1
        self.counters.pages_in_use -= 1
        self.counters.bytes_stored -= page.length
        if emptied is None:
            return 0.0
        self.counters.region_bytes -= emptied.size
        return self.memory.free_region(tenant, emptied.base)

    def _end(self, lease: Lease) -> int:
        live = [page for page in lease.pages if page.live]
        for page in live:
            self._release(lease.tenant, page)
        return len(live)

    def _handle(self, tenant: int, page: Page) -> PageHandle:
        return PageHandle(page.key, self.node, tenant, page.va, page.length, page.crc or 0)
