"""A tenant's address space on a memory node (board regions cut into KV pages), and leases.

Part of the memory node's page store (cluster/page_store.py). A board hands out large
regions (4 MiB on Clio) while KV pages are tens of KiB, so each region is cut into pages with
a bump pointer, and a freed page's slot goes to its arena's free list for that size. An arena
with no live page left is dropped (its region goes back to the board), so board memory grows
with the pages actually stored. A page address carries its tenant's slot in its top bits, so
`Spaces` finds the one space an address can belong to and refuses every other access. Pages are
found by address (sorted starts); content keys are the page index's (cluster/page_index.py).
A lease pins pages for one KV handoff until it is released or expires; a page that several
leases pin (concurrent requests for one prompt) is freed when the last of them ends.
"""

from __future__ import annotations

import bisect
import heapq
from collections import OrderedDict
from dataclasses import dataclass, field

from cluster.kv_pages import PageKey
from cluster.page_errors import (
    BadLengthError,
    ForeignPageError,
    FreedPageError,
    OutOfMemoryError,
    UnmappedAddressError,
)

TAG_SHIFT = 46  # board addresses stay below 2**46; the tenant's slot sits above them
_FREED_REMEMBERED = 4096  # freed pages remembered per tenant, to say "freed" not "unmapped"


@dataclass(slots=True, eq=False)
class Arena:
    base: int  # the region's board address
    size: int
    top: int = 0
    live: int = 0
    holes: dict[int, list[int]] = field(default_factory=dict)  # length -> free offsets

    def take(self, length: int) -> int | None:
        """An offset for a page of `length` bytes, or None when the arena is full."""
        if self.holes.get(length):
            return self.holes[length].pop()
        if self.top + length > self.size:
            return None
        self.top += length
        return self.top - length


@dataclass(slots=True, eq=False)
class Page:
    va: int
    length: int
    key: PageKey | None
    arena: Arena
    offset: int
    crc: int | None = None  # CRC-32 of the last whole-page write
    live: bool = True
    pins: int = 0  # leases holding the page: concurrent requests for one prompt share it
    filled: int = 0  # bytes written without a gap from the start of the page
    pending: list[tuple[int, int]] = field(default_factory=list)  # ranges written past a gap

    def record_write(self, offset: int, nbytes: int) -> None:
        self.pending.append((offset, offset + nbytes))
        self.pending.sort()
        while self.pending and self.pending[0][0] <= self.filled:
            self.filled = max(self.filled, self.pending.pop(0)[1])


@dataclass(slots=True)
class AddressSpace:
    tag: int  # the tenant's slot on this node, carried in the top bits of its addresses
    arenas: list[Arena] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)  # sorted page addresses
    pages: dict[int, Page] = field(default_factory=dict)
    freed: OrderedDict[int, int] = field(default_factory=OrderedDict)  # address -> length

    def page_at(self, va: int) -> Page | None:
        position = bisect.bisect_right(self.starts, va) - 1
        page = self.pages[self.starts[position]] if position >= 0 else None
        return page if page is not None and va < page.va + page.length else None

    def was_freed(self, va: int) -> bool:
        return any(start <= va < start + length for start, length in self.freed.items())

    def place(self, length: int) -> tuple[Arena, int] | None:
        """Room for a page in an arena this space already has, newest arena first."""
        for arena in reversed(self.arenas):
            offset = arena.take(length)
            if offset is not None:
                return arena, offset
        return None

    def add_arena(self, base: int, size: int) -> Arena:
        arena = Arena(base, size)
        self.arenas.append(arena)
        return arena

    def insert(self, page: Page) -> None:
        page.arena.live += 1
        bisect.insort(self.starts, page.va)
        self.pages[page.va] = page
        self.freed.pop(page.va, None)

    def remove(self, page: Page) -> Arena | None:
        """Takes the page out; returns its arena when that emptied and was dropped."""
        page.live = False
        del self.pages[page.va]
        self.starts.pop(bisect.bisect_left(self.starts, page.va))
        self.freed[page.va] = page.length
        if len(self.freed) > _FREED_REMEMBERED:
            self.freed.popitem(last=False)
        arena = page.arena
        arena.live -= 1
        arena.holes.setdefault(page.length, []).append(page.offset)
        if arena.live or len(self.arenas) == 1:
            return None
        self.arenas.remove(arena)
        return arena


class Spaces:
    """Every tenant's address space on one node, by tenant and by the slot its addresses carry."""

    def __init__(self) -> None:
        self._tenants: dict[int, AddressSpace] = {}
        self._owners: dict[int, int] = {}  # slot tag -> tenant

    def get(self, tenant: int) -> AddressSpace | None:
        return self._tenants.get(tenant)

    def pages_by_tenant(self) -> dict[int, int]:
        """Live pages in each tenant's space (a space, once opened, stays: 0 pages)."""
        return {tenant: len(space.pages) for tenant, space in self._tenants.items()}

    def open(self, tenant: int) -> AddressSpace:
        """The tenant's space, made on first use."""
        space = self._tenants.get(tenant)
        if space is None:
            tag = len(self._owners) + 1
            if tag >= 1 << (64 - TAG_SHIFT):
                raise OutOfMemoryError("no address-space slot left for another tenant")
            space = self._tenants[tenant] = AddressSpace(tag)
            self._owners[tag] = tenant
        return space

    def page(self, tenant: int, va: int, length: int) -> Page:
        """The live page of `tenant` holding [va, va + length), or a clear refusal."""
        space = self._tenants.get(tenant)
        if space is None or va >> TAG_SHIFT != space.tag:
            owner = self._tenants.get(self._owners.get(va >> TAG_SHIFT, -1))
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


@dataclass(slots=True)
class Lease:
    tenant: int
    pages: list[Page]
    expires_at: float


class Leases:
    """Leases by id and a heap of their expiry times (a re-grant leaves a stale entry)."""

    def __init__(self) -> None:
        self.active: dict[str, Lease] = {}
        self._heap: list[tuple[float, str]] = []

    def grant(self, lease_id: str, tenant: int, pages: list[Page], expires_at: float) -> Lease:
        lease = self.active.setdefault(lease_id, Lease(tenant, [], expires_at))
        held = {id(page) for page in lease.pages}
        for page in pages:
            if id(page) not in held:
                held.add(id(page))
                page.pins += 1
                lease.pages.append(page)
        lease.expires_at = max(lease.expires_at, expires_at)
        heapq.heappush(self._heap, (lease.expires_at, lease_id))
        return lease

    def pop(self, lease_id: str) -> Lease | None:
        return self.active.pop(lease_id, None)

    def due(self, now: float) -> list[tuple[str, Lease]]:
        """Takes out every lease whose expiry is at or before `now`, with its id."""
        ended = []
        while self._heap and self._heap[0][0] <= now:
            _, lease_id = heapq.heappop(self._heap)
            lease = self.active.get(lease_id)
            if lease is not None and lease.expires_at <= now:
                ended.append((lease_id, self.active.pop(lease_id)))
        return ended
