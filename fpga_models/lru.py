"""A least-recently-used cache with hit/miss accounting: the replacement policy of the small
on-chip memories the models have (Clio's TLB, an RDMA NIC's connection-state cache)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0

    @property
    def miss_rate(self) -> float:
        total = self.hits + self.misses
        return self.misses / total if total else 0.0


class LruCache(Generic[K, V]):
    def __init__(self, entries: int) -> None:
        if entries < 1:
            raise ValueError("a cache needs at least one entry")
        self.entries = entries
        self.stats = CacheStats()
        self._map: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The cached value (now most recently used), or None on a miss."""
        if key not in self._map:
            self.stats.misses += 1
            return None
        self._map.move_to_end(key)
        self.stats.hits += 1
        return self._map[key]

    def put(self, key: K, value: V) -> K | None:
        """Insert as most recently used; returns the key evicted to make room, if any."""
        self._map[key] = value
        self._map.move_to_end(key)
        if len(self._map) <= self.entries:
            return None
        evicted, _ = self._map.popitem(last=False)
        self.stats.evictions += 1
        return evicted

    def discard(self, key: K) -> None:
        self._map.pop(key, None)

    def keys(self) -> list[K]:
        """Resident keys, least recently used first."""
        return list(self._map)

    def __len__(self) -> int:
        return len(self._map)
