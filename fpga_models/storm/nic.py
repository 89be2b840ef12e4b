"""An RDMA NIC as the dataplane sees it: a small on-chip cache of connection state in front of
a few processing units.

Every request needs its reliable connection's state (~375 B). The NIC keeps ~2 MB of it,
least recently used out first; a miss stalls a processing unit while the state comes over
PCIe (300-400 ns). With few connections everything hits and the units stream reads at their
pipeline rate; once connections overflow the cache nearly every read misses and throughput
falls to what the PCIe fetches allow. `read_throughput_mops` drives a stream of reads over N
connections through the cache and prices the units' occupancy.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from fpga_models.lru import CacheStats, LruCache
from fpga_models.net import message_transfer_ns
from fpga_models.storm.params import StormParams


class ConnectionCache:
    """LRU set of connection ids that fits `entries` connections' state."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._cache: LruCache[Hashable, bool] = LruCache(entries)

    @property
    def stats(self) -> CacheStats:
        return self._cache.stats

    def access(self, connection: Hashable) -> bool:
        """Touch a connection's state; True on a hit. A miss loads it, evicting the LRU one."""
        if self._cache.get(connection):
            return True
        self._cache.put(connection, True)
        return False


class RdmaNic:
    def __init__(self, params: StormParams) -> None:
        self.params = params
        self.cache = ConnectionCache(params.connection_cache_entries)

    def touch(self, connection: Hashable) -> float:
        """Extra latency this request pays for its connection state (0 on a hit)."""
        return 0.0 if self.cache.access(connection) else self.params.connection_miss_ns

    def occupancy_ns(self, connection: Hashable) -> float:
        """How long one read keeps a processing unit busy."""
        return self.params.nic_op_occupancy_ns + self.touch(connection)


def read_throughput_mops(
    params: StormParams, connections: int, reads: int = 60_000, seed: int = 0
) -> float:
    """One-sided reads per second (millions) a server NIC sustains for reads spread uniformly
    over `connections` connections; also capped by the link's bandwidth for the responses."""
    rng = np.random.default_rng(seed)
    nic = RdmaNic(params)
    warmup = min(connections, params.connection_cache_entries)
    for connection in range(warmup):
        nic.touch(connection)
    stream = rng.integers(0, connections, size=reads)
    busy_ns = sum(nic.occupancy_ns(int(connection)) for connection in stream)
    nic_rate = reads * params.nic_processing_units / busy_ns  # reads per ns
    response_ns = message_transfer_ns(params.item_bytes, params.links()[:1], params.framing)
    return min(nic_rate, 1.0 / response_ns) * 1e3
