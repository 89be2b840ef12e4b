"""The memory node's fast path: the hardware pipeline every data request goes through.

Per request: permission check (the address must lie in one range the requesting process
allocated, the length must be positive, small enough for one request and inside the range),
then per touched page a translation (TLB, else one page-table bucket fetch), a fault served
from the free-page buffer on first touch, and the DRAM access itself. The pipeline records
what it did in `BoardWork`; the latency model prices that record.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fpga_models.clio.allocator import SlowPath, VaRange
from fpga_models.clio.errors import (
    FreedAddress,
    OutOfRange,
    ReadOnlyViolation,
    UnmappedAddress,
)
from fpga_models.clio.memory import MappedMemory, PhysicalMemory
from fpga_models.clio.page_table import HashPageTable
from fpga_models.clio.params import ClioParams
from fpga_models.clio.tlb import Tlb

LOCK_WORD_BYTES = 8
_HELD = (1).to_bytes(LOCK_WORD_BYTES, "little")
_FREE = bytes(LOCK_WORD_BYTES)


@dataclass(slots=True)
class BoardWork:
    """What one request cost the board, in countable events."""

    translations: int = 0
    tlb_misses: int = 0
    buffered_faults: int = 0
    slow_faults: int = 0
    dram_bytes: int = 0


class FastPath:
    def __init__(
        self,
        params: ClioParams,
        page_table: HashPageTable,
        tlb: Tlb,
        slow_path: SlowPath,
        memory: PhysicalMemory | MappedMemory,
    ) -> None:
        self.params = params
        self.page_table = page_table
        self.tlb = tlb
        self.slow_path = slow_path
        self.memory = memory

    def check(self, pid: int, va: int, nbytes: int, write: bool) -> VaRange:
        """Raise unless `pid` may touch [va, va + nbytes); returns the enclosing range."""
        space = self.slow_path.spaces.get(pid)
        found = space.range_at(va, self.params.page_size) if space else None
        if found is None:
            if space is not None and space.was_freed(va):
                raise FreedAddress(f"pid {pid}: {va:#x} is in a freed range")
            raise UnmappedAddress(f"pid {pid}: {va:#x} is not in any range of this process")
        if nbytes <= 0 or nbytes > self.params.max_request_bytes:
            raise OutOfRange(
                f"length {nbytes} (one request moves 1..{self.params.max_request_bytes})"
            )
        if va + nbytes > found.end:
            raise OutOfRange(f"{nbytes} bytes at {va:#x} run past the range end {found.end:#x}")
        if write and not found.writable:
            raise ReadOnlyViolation(f"pid {pid}: {va:#x} is read-only")
        return found

    def read(self, pid: int, va: int, nbytes: int) -> tuple[bytes, BoardWork]:
        self.check(pid, va, nbytes, write=False)
        work = BoardWork(dram_bytes=nbytes)
        parts = [
            self.memory.read(self._translate(pid, vpn, work), offset, length)
            for vpn, offset, length, _ in self._pages(va, nbytes)
        ]
        return b"".join(parts), work

    def write(self, pid: int, va: int, data: bytes) -> BoardWork:
        self.check(pid, va, len(data), write=True)
        work = BoardWork(dram_bytes=len(data))
        view = memoryview(data)
        for vpn, offset, length, at in self._pages(va, len(data)):
            self.memory.write(self._translate(pid, vpn, work), offset, view[at : at + length])
        return work

    def frames(self, pid: int, va: int, nbytes: int) -> tuple[list[int], BoardWork]:
        """The frames under [va, va + nbytes) (one writable range, of any length), each
        faulted in now if it was not yet."""
        mapped = self.check(pid, va, 1, write=True)
        if nbytes <= 0 or va + nbytes > mapped.end:
            raise OutOfRange(f"{nbytes} bytes at {va:#x} leave the range at {mapped.start:#x}")
        work = BoardWork()
        frames = [self._translate(pid, vpn, work) for vpn, *_ in self._pages(va, nbytes)]
        return frames, work

    def test_and_set(self, pid: int, va: int) -> tuple[bool, BoardWork]:
        """Atomically set the lock word at `va`; True when it was free (lock acquired)."""
        return self._swap_word(pid, va, _HELD)

    def clear(self, pid: int, va: int) -> BoardWork:
        return self._swap_word(pid, va, _FREE)[1]

    def _swap_word(self, pid: int, va: int, word: bytes) -> tuple[bool, BoardWork]:
        """Store `word` into the aligned lock word at `va` if it was free; one translation."""
        self.check(pid, va, LOCK_WORD_BYTES, write=True)
        if va % LOCK_WORD_BYTES:
            raise OutOfRange(f"lock word at {va:#x} is not {LOCK_WORD_BYTES}-byte aligned")
        work = BoardWork(dram_bytes=LOCK_WORD_BYTES)
        vpn, offset = divmod(va, self.params.page_size)
        ppn = self._translate(pid, vpn, work)
        was_free = self.memory.read(ppn, offset, LOCK_WORD_BYTES) == _FREE
        if was_free or word == _FREE:
            self.memory.write(ppn, offset, word)
        return was_free, work

    def _translate(self, pid: int, vpn: int, work: BoardWork) -> int:
        work.translations += 1
        ppn = self.tlb.lookup(pid, vpn)
        if ppn is not None:
            return ppn
        work.tlb_misses += 1
        entry = self.page_table.lookup(pid, vpn)
        if entry is None:  # the range check passed, so the PTE must exist
            raise UnmappedAddress(f"pid {pid}: no PTE for page {vpn:#x}")
        if entry.ppn is None:
            entry.ppn, buffered = self.slow_path.take_fault_frame()
            if buffered:
                work.buffered_faults += 1
            else:
                work.slow_faults += 1
        self.tlb.fill(pid, vpn, entry.ppn)
        return entry.ppn

    def _pages(self, va: int, nbytes: int) -> Iterator[tuple[int, int, int, int]]:
        """(vpn, offset in page, length, position in the request) for each touched page."""
        page_size = self.params.page_size
        at = 0
        while at < nbytes:
            vpn, offset = divmod(va + at, page_size)
            length = min(page_size - offset, nbytes - at)
            yield vpn, offset, length, at
            at += length
