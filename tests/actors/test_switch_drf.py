"""Two tenants push KV pages through one SuperNICSwitch at once; DRF splits the switch.

One tenant sends float32 KV pages, which compress (a little) and so keep the compression NT
busy; the other sends random bytes, which skip it. The switch's capacities are the sNIC's
scaled down to 4 MB/s of ingress so that two KVClients saturate it; the compression NT then
has 1.6 MB/s, the compressing tenant's dominant resource. Measured throughput shares must
match the allocation shares the switch reports, within 10%.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import ray

from actors.kv.kv_client import KVClient
from actors.memory.memory_node import MemoryNode
from actors.switch.supernic_switch import SuperNICSwitch
from cluster.kv_pages import page_keys, tenant_id
from fpga_models.supernic.fair_share import FairShareConfig
from tests.support import KV_SECRET, presenting

pytestmark = pytest.mark.actors

PAGE = 64 * 1024
INGRESS_BYTES_PER_S = 4e6
SNIC_PORT_BYTES_PER_S = 100e9 / 8
RUN_S, WARMUP_S = 5.0, 1.0


def rotary_kv_pages(count: int, seed: int) -> list[bytes]:
    """float32 K rows as rotary-embedded attention keys are (cos/sin pairs per position),
    then V rows of small normal values: what a 64 KiB KV block holds."""
    rng = np.random.default_rng(seed)
    tokens, dim = PAGE // 4 // 2 // 64, 64
    angles = np.outer(np.arange(tokens), 1e-2 ** (np.arange(dim // 2) / (dim // 2)))
    pages = []
    for _ in range(count):
        scale = rng.uniform(0.5, 2.0, dim // 2)
        keys = np.concatenate([np.cos(angles) * scale, np.sin(angles) * scale], axis=1)
        values = rng.normal(0.0, 0.05, (tokens, dim))
        pages.append(np.concatenate([keys, values]).astype(np.float32).tobytes())
    return pages


@dataclass
class Pusher:
    """One tenant writing its pages over and over through its own KVClient."""

    adapter: str
    pages: list[bytes]
    done: list[tuple[float, int]] = field(default_factory=list)

    @property
    def tenant(self) -> int:
        return tenant_id("llama", self.adapter)

    def run(self, address: str, stop: threading.Event) -> None:
        keys = page_keys("llama", self.adapter, list(range(16 * len(self.pages))), 16)
        with presenting(KVClient(address, timeout_s=10.0), self.tenant) as client:
            handles = [client.alloc(self.tenant, key, PAGE) for key in keys]
            sent = 0
            while not stop.is_set():
                client.write_page(handles[sent % len(handles)], self.pages[sent % len(self.pages)])
                sent += 1
                self.done.append((time.monotonic(), PAGE))

    def bytes_between(self, start: float, end: float) -> int:
        return sum(nbytes for at, nbytes in self.done if start <= at < end)


@pytest.fixture(scope="module")
def switch() -> Iterator[Any]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        node = ray.remote(MemoryNode).options(num_cpus=0).remote("mem0", secret=KV_SECRET)
        config = FairShareConfig(epoch_s=0.05, scale=INGRESS_BYTES_PER_S / SNIC_PORT_BYTES_PER_S)
        yield (
            ray.remote(SuperNICSwitch)
            .options(num_cpus=0)
            .remote({"mem0": node}, fair_share=config, secret=KV_SECRET)
        )
    finally:
        ray.shutdown()


def granted(switch: Any) -> dict[str, float]:
    tenants = ray.get(switch.stats.remote())["fair_share"]["tenants"]
    return {tenant: usage["granted_bytes"] for tenant, usage in tenants.items()}


def test_two_tenants_get_their_drf_shares_of_the_switch(switch: Any) -> None:
    address = ray.get(switch.address.remote())
    pushers = [Pusher("kv-fp32", rotary_kv_pages(8, seed=1)), Pusher("random", [])]
    pushers[1].pages = [os.urandom(PAGE) for _ in range(8)]
    stop = threading.Event()
    threads = [threading.Thread(target=p.run, args=(address, stop)) for p in pushers]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(WARMUP_S)
    window_start, granted_before = time.monotonic(), granted(switch)
    time.sleep(RUN_S - WARMUP_S)
    window_end, granted_after = time.monotonic(), granted(switch)
    stats = ray.get(switch.stats.remote())
    stop.set()
    for thread in threads:
        thread.join(timeout=15.0)
    assert time.monotonic() - start < 20.0

    report = stats["fair_share"]
    measured = {str(p.tenant): p.bytes_between(window_start, window_end) for p in pushers}
    allocated = {t: granted_after[t] - granted_before.get(t, 0.0) for t in measured}
    seconds = window_end - window_start
    for pusher in pushers:
        tenant = str(pusher.tenant)
        got, share = (
            measured[tenant] / sum(measured.values()),
            allocated[tenant] / sum(allocated.values()),
        )
        usage = stats["tenants"][tenant]
        print(
            f"{pusher.adapter:>8}: allocated {allocated[tenant] / seconds / 1e6:.2f} MB/s "
            f"({share:.1%}), measured {measured[tenant] / seconds / 1e6:.2f} MB/s ({got:.1%}), "
            f"backlogged {report['tenants'][tenant]['backlogged']}, "
            f"compression {usage['bytes_in'] / usage['bytes_on_wire']:.3f}x"
        )
        assert report["tenants"][tenant]["backlogged"]
        assert abs(got - share) <= 0.1 * share
    print(f"Jain index of the dominant shares: {report['jain_index']:.3f}")
    compressing = allocated[str(pushers[0].tenant)] / sum(allocated.values())
    assert compressing < 0.4  # its dominant resource, the compression NT, is the scarce one
    assert sum(measured.values()) / seconds <= 1.1 * INGRESS_BYTES_PER_S
