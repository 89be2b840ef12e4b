"""The memory node's slow path: per-process virtual address spaces, ralloc/rfree, and the
buffer of free physical pages that lets the fast path take page faults without a penalty.

ralloc never allocates physical memory. It picks a virtual range whose every page fits its
page-table bucket (retrying further up the address space when one does not, and counting the
retries), then installs invalid PTEs. The first touch of a page takes a frame from the
free-page buffer, which the slow path refills in the background; only when the buffer has
run dry does a fault fall back to the slow path.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

from fpga_models.clio.errors import FreedAddress, OutOfMemory, OutOfRange, UnmappedAddress
from fpga_models.clio.page_table import HashPageTable
from fpga_models.clio.params import ClioParams
from fpga_models.clio.tlb import Tlb

_FREED_RANGES_REMEMBERED = 256


@dataclass(frozen=True, slots=True)
class VaRange:
    """An allocated range: `nbytes` usable bytes starting at a page-aligned `start`."""

    start: int
    nbytes: int
    pages: int
    first_vpn: int
    writable: bool

    @property
    def end(self) -> int:
        return self.start + self.nbytes


@dataclass(slots=True)
class AddressSpace:
    """One process's ranges, sorted by first page, and the ranges it freed recently."""

    ranges: list[VaRange] = field(default_factory=list)
    first_vpns: list[int] = field(default_factory=list)
    freed: deque[tuple[int, int]] = field(
        default_factory=lambda: deque(maxlen=_FREED_RANGES_REMEMBERED)
    )

    def add(self, new_range: VaRange) -> None:
        position = bisect.bisect_left(self.first_vpns, new_range.first_vpn)
        self.first_vpns.insert(position, new_range.first_vpn)
        self.ranges.insert(position, new_range)

    def remove(self, old_range: VaRange) -> None:
        position = bisect.bisect_left(self.first_vpns, old_range.first_vpn)
        del self.first_vpns[position], self.ranges[position]
        self.freed.append((old_range.start, old_range.end))

    def range_at(self, va: int, page_size: int) -> VaRange | None:
        position = bisect.bisect_right(self.first_vpns, va // page_size) - 1
        if position >= 0 and self.ranges[position].start <= va < self.ranges[position].end:
            return self.ranges[position]
        return None

    def was_freed(self, va: int) -> bool:
        return any(start <= va < end for start, end in self.freed)

    def first_gap(self, from_vpn: int, pages: int) -> int:
        """Lowest vpn >= from_vpn where `pages` pages are free of this process's ranges."""
        candidate = from_vpn
        start = max(0, bisect.bisect_right(self.first_vpns, from_vpn) - 1)
        for position in range(start, len(self.ranges)):
            item = self.ranges[position]
            if item.first_vpn + item.pages <= candidate:
                continue
            if item.first_vpn >= candidate + pages:
                break
            candidate = item.first_vpn + item.pages
        return candidate


@dataclass(frozen=True, slots=True)
class AllocOutcome:
    va: int
    pages: int
    retries: int
    buckets_probed: int


class SlowPath:
    """ralloc / rfree and physical-frame management, as the board's ARM cores run them."""

    def __init__(self, params: ClioParams, page_table: HashPageTable, tlb: Tlb) -> None:
        self.params = params
        self.page_table = page_table
        self.tlb = tlb
        self.spaces: dict[int, AddressSpace] = {}
        self.free_frames: deque[int] = deque(range(params.physical_pages))
        self.free_page_buffer: deque[int] = deque()
        self.total_retries = 0
        self.slow_faults = 0
        self.refill()

    def space(self, pid: int) -> AddressSpace:
        return self.spaces.setdefault(pid, AddressSpace())

    def ralloc(self, pid: int, nbytes: int, writable: bool = True) -> AllocOutcome:
        if nbytes <= 0:
            raise OutOfRange(f"ralloc of {nbytes} bytes")
        page_size = self.params.page_size
        pages = -(-nbytes // page_size)
        last_vpn = self.params.va_space_bytes // page_size
        space = self.space(pid)
        cursor, probed = 1, 0  # page 0 stays unmapped: a null address never translates
        for attempt in range(self.params.max_ralloc_attempts):
            first_vpn = space.first_gap(cursor, pages)
            if first_vpn + pages > last_vpn:
                break
            overflowing = self.page_table.fits(pid, range(first_vpn, first_vpn + pages))
            if overflowing is None:
                probed += pages
                return self._install(
                    pid, space, first_vpn, pages, nbytes, writable, attempt, probed
                )
            probed += overflowing - first_vpn + 1
            cursor = overflowing + 1  # every range holding that page meets the same bucket
        raise OutOfMemory(f"no {pages}-page range fits the page table for pid {pid}")

    def _install(
        self,
        pid: int,
        space: AddressSpace,
        first_vpn: int,
        pages: int,
        nbytes: int,
        writable: bool,
        retries: int,
        probed: int,
    ) -> AllocOutcome:
        for vpn in range(first_vpn, first_vpn + pages):
            self.page_table.install(pid, vpn, writable)
        start = first_vpn * self.params.page_size
        new_range = VaRange(start, nbytes, pages, first_vpn, writable)
        space.add(new_range)
        self.total_retries += retries
        return AllocOutcome(va=start, pages=pages, retries=retries, buckets_probed=probed)

    def rfree(self, pid: int, va: int) -> list[int]:
        """Unmap the range starting at `va`; returns the frames released (caller scrubs them)."""
        space = self.spaces.get(pid)
        found = space.range_at(va, self.params.page_size) if space else None
        if space is None or found is None or found.start != va:
            if space is not None and space.was_freed(va):
                raise FreedAddress(f"pid {pid}: {va:#x} was already freed")
            raise UnmappedAddress(f"pid {pid}: no range starts at {va:#x}")
        released: list[int] = []
        for vpn in range(found.first_vpn, found.first_vpn + found.pages):
            entry = self.page_table.remove(pid, vpn)
            self.tlb.invalidate(pid, vpn)
            if entry.ppn is not None:
                released.append(entry.ppn)
        space.remove(found)
        # Most recently freed first: the frames in use stay few and warm, in the host's
        # caches and its page tables alike. (A frame that waits at the back of the list
        # until every other has been used is memory the machine must first fault in, and
        # then keeps resident: with a FIFO the shared arena grew towards its full size.)
        self.free_frames.extendleft(reversed(released))
        return released

    def take_fault_frame(self) -> tuple[int, bool]:
        """A frame for a first touch, and whether it came from the buffer (no penalty)."""
        if self.free_page_buffer:
            return self.free_page_buffer.popleft(), True
        if not self.free_frames:
            raise OutOfMemory("no physical page left on the memory node")
        self.slow_faults += 1
        return self.free_frames.popleft(), False

    def refill(self) -> None:
        """Background work of the slow path: top the free-page buffer up."""
        while len(self.free_page_buffer) < self.params.free_page_buffer_pages and self.free_frames:
            self.free_page_buffer.append(self.free_frames.popleft())
