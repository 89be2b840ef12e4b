"""A tenant's address space on a memory node (board regions cut into KV pages), and leases.

Part of the memory node's page store (cluster/page_store.py). A board hands out large
regions (4 MiB on Clio) while KV pages are tens of KiB, so each region is cut into pages with
a bump pointer, and a freed page's slot goes to its arena's free list for that size. An arena
with no live page left is dropped (its region goes back to the board), so board memory grows
with the pages actually stored. Pages are found by address (sorted starts) and by content key.
A lease pins pages for one KV handoff until it is released or expires.
"""

from __future__ import annotations

import bisect
import heapq
from collections import OrderedDict
from dataclasses import dataclass, field

from cluster.kv_pages import PageKey

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
    keys: dict[PageKey, Page] = field(default_factory=dict)
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
        if page.key is not None:
            self.keys[page.key] = page

    def remove(self, page: Page) -> Arena | None:
        """Takes the page out; returns its arena when that emptied and was dropped."""
        page.live = False
        del self.pages[page.va]
        self.starts.pop(bisect.bisect_left(self.starts, page.va))
        if page.key is not None:
            self.keys.pop(page.key, None)
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
        lease.pages.extend(page for page in pages if id(page) not in held)
        lease.expires_at = max(lease.expires_at, expires_at)
        heapq.heappush(self._heap, (lease.expires_at, lease_id))
        return lease

    def pop(self, lease_id: str) -> Lease | None:
        return self.active.pop(lease_id, None)

    def due(self, now: float) -> list[Lease]:
        """Takes out every lease whose expiry is at or before `now`."""
        ended = []
        while self._heap and self._heap[0][0] <= now:
            _, lease_id = heapq.heappop(self._heap)
            lease = self.active.get(lease_id)
            if lease is not None and lease.expires_at <= now:
                ended.append(self.active.pop(lease_id))
        return ended
