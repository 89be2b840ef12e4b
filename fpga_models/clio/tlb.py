"""The board's TLB: a small fully associative cache of valid translations, least recently used
out first. A hit costs one CAM lookup; a miss costs a page-table bucket fetch (see latency).
Entries are keyed by (pid, vpn) so processes share the TLB without seeing each other's pages;
freeing a range shoots its entries down.
"""

from __future__ import annotations

from fpga_models.lru import CacheStats, LruCache

TlbKey = tuple[int, int]  # (pid, vpn)


class Tlb:
    """LRU map (pid, vpn) -> physical page number."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._cache: LruCache[TlbKey, int] = LruCache(entries)

    @property
    def stats(self) -> CacheStats:
        return self._cache.stats

    def lookup(self, pid: int, vpn: int) -> int | None:
        return self._cache.get((pid, vpn))

    def fill(self, pid: int, vpn: int, ppn: int) -> TlbKey | None:
        """Insert a translation; returns the key evicted to make room, if any."""
        return self._cache.put((pid, vpn), ppn)

    def invalidate(self, pid: int, vpn: int) -> None:
        self._cache.discard((pid, vpn))

    def keys(self) -> list[TlbKey]:
        """Resident keys, least recently used first."""
        return self._cache.keys()

    def __len__(self) -> int:
        return len(self._cache)
