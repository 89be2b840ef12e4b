"""The memory node's page table: one flat hash table shared by every process.

A PTE is found by hashing (pid, virtual page number) to a bucket of `bucket_entries` slots;
the whole bucket comes back in one DRAM read, so a translation never costs more than one
memory access. The table has more slots than there are physical pages (2x by default) and
never overflows: the allocator asks `fits` before installing a range, and `install` refuses
to place a PTE into a full bucket rather than chaining.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from fpga_models.hashing import mix64


@dataclass(slots=True)
class PageTableEntry:
    """One virtual page of one process. `ppn` is None until the page is first touched."""

    pid: int
    vpn: int
    writable: bool
    ppn: int | None = None

    @property
    def valid(self) -> bool:
        return self.ppn is not None


class BucketOverflow(RuntimeError):
    """An install aimed at a full bucket: the allocator should have chosen another range."""


class HashPageTable:
    """Buckets of PTEs indexed by hash(pid, vpn)."""

    def __init__(self, slots: int, bucket_entries: int) -> None:
        self.bucket_entries = bucket_entries
        self.bucket_count = max(1, -(-slots // bucket_entries))
        self._buckets: list[list[PageTableEntry]] = [[] for _ in range(self.bucket_count)]
        self._entries = 0

    @property
    def capacity(self) -> int:
        return self.bucket_count * self.bucket_entries

    @property
    def occupancy(self) -> float:
        return self._entries / self.capacity

    def __len__(self) -> int:
        return self._entries

    def bucket_index(self, pid: int, vpn: int) -> int:
        return mix64((pid << 44) ^ vpn) % self.bucket_count

    def bucket_load(self, index: int) -> int:
        return len(self._buckets[index])

    def fits(self, pid: int, vpns: Iterable[int]) -> int | None:
        """None if every page fits its bucket, else the first vpn whose bucket would overflow."""
        wanted: Counter[int] = Counter()
        for vpn in vpns:
            index = self.bucket_index(pid, vpn)
            wanted[index] += 1
            if len(self._buckets[index]) + wanted[index] > self.bucket_entries:
                return vpn
        return None

    def install(self, pid: int, vpn: int, writable: bool) -> PageTableEntry:
        """Add an invalid PTE for (pid, vpn); the page gets a frame on first touch."""
        bucket = self._buckets[self.bucket_index(pid, vpn)]
        if len(bucket) >= self.bucket_entries:
            raise BucketOverflow(f"bucket full for pid {pid} vpn {vpn:#x}")
        if any(entry.pid == pid and entry.vpn == vpn for entry in bucket):
            raise ValueError(f"pid {pid} vpn {vpn:#x} already mapped")
        entry = PageTableEntry(pid=pid, vpn=vpn, writable=writable)
        bucket.append(entry)
        self._entries += 1
        return entry

    def lookup(self, pid: int, vpn: int) -> PageTableEntry | None:
        """Scan the one bucket the hash names (one DRAM read on the board)."""
        for entry in self._buckets[self.bucket_index(pid, vpn)]:
            if entry.pid == pid and entry.vpn == vpn:
                return entry
        return None

    def remove(self, pid: int, vpn: int) -> PageTableEntry:
        bucket = self._buckets[self.bucket_index(pid, vpn)]
        for position, entry in enumerate(bucket):
            if entry.pid == pid and entry.vpn == vpn:
                del bucket[position]
                self._entries -= 1
                return entry
        raise KeyError((pid, vpn))

    def max_bucket_load(self) -> int:
        return max(len(bucket) for bucket in self._buckets)
