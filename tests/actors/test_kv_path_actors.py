"""The KV path on local Ray: KVClient -> gRPC -> SuperNICSwitch actor -> MemoryNode actors,
and an engine's one-sided path (actors/kv/page_io.py) into a memory node's shared arena."""

from __future__ import annotations

import dataclasses
import os
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import psutil
import pytest
import ray
import torch

from actors import cpu_priority
from actors.kv.kv_client import KVClient, KVTransferError
from actors.kv.page_io import PageIO
from actors.memory.memory_node import MemoryNode
from actors.switch.supernic_switch import SuperNICSwitch
from actors.wire import lease_pages
from cluster.kv_capability import CapabilityAuthority
from cluster.kv_pages import PageHandle, PageKey, page_keys, tenant_id
from tests.support import KV_SECRET, presenting
from tetriserve.v1 import kv_pb2

pytestmark = pytest.mark.actors

PAGE = 64 * 1024
NODES = ("mem0", "mem1")


@dataclass
class KVPath:
    nodes: dict[str, Any]
    switch: Any
    client: KVClient

    def stats(self) -> dict[str, Any]:
        return ray.get(self.switch.stats.remote())


def memory_node(name: str) -> Any:
    return ray.remote(MemoryNode).options(num_cpus=0).remote(name, secret=KV_SECRET)


@pytest.fixture(scope="module")
def path() -> Iterator[KVPath]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        nodes = {name: memory_node(name) for name in NODES}
        switch = ray.remote(SuperNICSwitch).options(num_cpus=0).remote(nodes, secret=KV_SECRET)
        client = KVClient(ray.get(switch.address.remote()), timeout_s=5.0)
        yield KVPath(nodes, switch, client)
        client.close()
    finally:
        ray.shutdown()


def tenant_keys(path: KVPath, adapter: str, count: int) -> tuple[int, list[PageKey]]:
    """A tenant (whose capability the path's client presents from now on) and its keys."""
    tokens = list(range(1000 * len(adapter), 1000 * len(adapter) + 16 * count))
    tenant = tenant_id("llama", adapter)
    presenting(path.client, tenant)
    return tenant, page_keys("llama", adapter, tokens, 16)


def store_pages(
    client: KVClient, tenant: int, keys: list[PageKey], pages: list[bytes]
) -> list[PageHandle]:
    handles = [client.alloc(tenant, key, len(page)) for key, page in zip(keys, pages, strict=True)]
    for handle, page in zip(handles, pages, strict=True):
        client.write_page(handle, page)
    return handles


def kv_like_pages(count: int, seed: int) -> list[bytes]:
    """float32 K/V rows: smooth per-head signals with a little noise, as attention keys are."""
    rng = np.random.default_rng(seed)
    positions = np.arange(PAGE // 4 // 64, dtype=np.float32)[:, None]
    frequencies = rng.uniform(0.01, 0.5, size=64).astype(np.float32)
    rows = np.sin(positions * frequencies) + rng.normal(0, 0.02, (positions.size, 64))
    return [(rows + i).astype(np.float32).tobytes() for i in range(count)]


def test_pages_round_trip_for_two_tenants_over_both_nodes(path: KVPath) -> None:
    client, verified_before = path.client, path.stats()["checksums_verified"]
    stored = {}
    for adapter in ("alpha", "beta"):
        tenant, keys = tenant_keys(path, adapter, 8)
        pages = [os.urandom(PAGE) for _ in keys]
        handles = store_pages(client, tenant, keys, pages)
        assert [client.read_page(h) for h in handles] == pages
        assert client.lookup(tenant, keys) == [
            dataclasses.replace(h, length=PAGE, checksum=zlib.crc32(p))
            for h, p in zip(handles, pages, strict=True)
        ]
        assert all(h.arena and h.arena_offset % 4 == 0 for h in handles)  # one-sided too
        assert client.alloc(tenant, keys[0], PAGE).virtual_address == handles[0].virtual_address
        stored[tenant] = handles
    assert {h.memory_node for handles in stored.values() for h in handles} == set(NODES)
    assert path.stats()["checksums_verified"] - verified_before == 2 * 16  # writes + reads
    node_stats = ray.get([node.stats.remote() for node in path.nodes.values()])
    assert sum(s["verified_reads"] for s in node_stats) >= 16
    index = {k: sum(s["index"][k] for s in node_stats) for k in node_stats[0]["index"]}
    print("page index on the memory nodes:", {k: round(v, 3) for k, v in index.items()})
    assert index["lookups"] >= 2 * 16 and index["lookup_rpcs"] < index["lookups"] / 4
    assert index["tx_commits"] >= 16 and index["tx_aborts"] == 0


def test_a_prompts_pages_move_in_one_call_each_way(path: KVPath) -> None:
    client = path.client
    tenant, keys = tenant_keys(path, "epsilon", 6)
    pages = kv_like_pages(6, seed=3)
    ops_before = path.stats()["ops"]
    handles = client.write_pages(tenant, list(zip(keys, pages, strict=True)))
    assert len({h.memory_node for h in handles}) == 1  # one node holds a whole batch
    assert client.lookup(tenant, keys) == handles
    assert client.read_pages(tenant, list(reversed(handles))) == list(reversed(pages))
    ops = path.stats()["ops"]
    assert ops["WritePages"] - ops_before.get("WritePages", 0) == 1
    assert ops["ReadPages"] - ops_before.get("ReadPages", 0) == 1
    rewritten = client.write_pages(tenant, [(keys[0], pages[1])])  # same key: same page
    assert rewritten == [dataclasses.replace(handles[0], checksum=zlib.crc32(pages[1]))]
    assert client.read_pages(tenant, rewritten) == [pages[1]]
    intruder, _ = tenant_keys(path, "zeta", 1)
    with pytest.raises(KVTransferError) as caught:
        client.read_pages(intruder, handles[:1])
    assert caught.value.code == "PERMISSION_DENIED"


def node_bytes_read(path: KVPath) -> int:
    return sum(s["bytes_read"] for s in ray.get([n.stats.remote() for n in path.nodes.values()]))


def test_another_tenants_page_gives_an_error_and_no_bytes(path: KVPath) -> None:
    client = path.client
    owner, keys = tenant_keys(path, "gamma", 2)
    intruder, intruder_keys = tenant_keys(path, "delta", 1)
    secret = os.urandom(PAGE)
    handle, other = store_pages(client, owner, keys, [secret, secret])
    client.grant_lease("gamma-lease", owner, [other])
    theirs = client.alloc(intruder, intruder_keys[0], PAGE, memory_node=other.memory_node)
    node, va = handle.memory_node, handle.virtual_address
    read_before = node_bytes_read(path)
    failures = {}
    for name, call in {
        "read": lambda: client.read(intruder, node, va, PAGE),
        "read inside": lambda: client.read(intruder, node, va + 4096, 16),
        "write": lambda: client.write(intruder, node, va, b"x" * 64),
        "free": lambda: client.free(intruder, node, va),
        "lock": lambda: client.lock(intruder, node, va),
        "lease": lambda: client.grant_lease("delta-lease", intruder, [handle]),
        "their lease id": lambda: client.grant_lease("gamma-lease", intruder, [theirs]),
        "their key": lambda: client.alloc(intruder, keys[0], PAGE),
        "forged": lambda: client.read(owner, node, va + (1 << 40), 16),
        "forged write": lambda: client.write(owner, node, va ^ (1 << 50), b"x"),
        "too long": lambda: client.read(owner, node, va, PAGE + 1),
        "past the end": lambda: client.read(owner, node, va + PAGE - 8, 16),
        "write past the end": lambda: client.write(owner, node, va + PAGE - 8, b"x" * 16),
        "empty": lambda: client.read(owner, node, va, 0),
        "no node": lambda: client.read(owner, "mem9", va, 16),
    }.items():
        with pytest.raises(KVTransferError) as caught:
            call()
        failures[name] = caught.value.code
    denied, invalid = "PERMISSION_DENIED", "INVALID_ARGUMENT"
    assert failures == {
        **dict.fromkeys(["read", "read inside", "write", "free", "lock", "lease"], denied),
        **dict.fromkeys(["their lease id", "their key", "forged", "forged write"], denied),
        **dict.fromkeys(["too long", "past the end", "write past the end", "empty"], invalid),
        "no node": "NOT_FOUND",
    }
    assert client.lookup(intruder, keys) == [None, None]  # no handle of theirs either
    assert node_bytes_read(path) == read_before  # nothing was read for a refused request
    assert str(intruder) not in {t for t, u in path.stats()["tenants"].items() if u["bytes_out"]}
    assert client.read_page(handle) == secret
    client.free(owner, node, va)
    for call in (
        lambda: client.read_page(handle),
        lambda: client.write_page(handle, secret),
        lambda: client.free(owner, node, va),
        lambda: client.grant_lease("gamma-late", owner, [handle]),
    ):
        with pytest.raises(KVTransferError, match="FreedPageError") as caught:
            call()
        assert caught.value.code == "NOT_FOUND"
    assert client.lookup(owner, keys)[0] is None
    assert client.release_lease("gamma-lease", owner) == 1


def test_switch_counts_each_tenants_bytes_and_compresses_kv(path: KVPath) -> None:
    client = path.client
    sent = {}
    for seed, adapter in enumerate(("kv-one", "kv-two")):
        tenant, keys = tenant_keys(path, adapter, 4 + 2 * seed)
        pages = kv_like_pages(len(keys), seed)
        handles = store_pages(client, tenant, keys, pages)
        assert client.read_page(handles[0]) == pages[0]
        sent[str(tenant)] = (sum(map(len, pages)), PAGE)
    tenants = path.stats()["tenants"]
    usage = client.switch_stats()
    for tenant, (written, read) in sent.items():
        counted = tenants[tenant]
        assert (counted["bytes_in"], counted["bytes_out"]) == (written, read)
        assert usage[tenant][0] == written + read
        ratio = (written + read) / counted["bytes_on_wire"]
        print(f"tenant {tenant}: float32 KV pages compress {ratio:.3f}x on the wire")
        assert ratio > 1.02
    small, big = sorted(sent, key=lambda t: sent[t][0])
    assert 0.0 < usage[small][1] <= usage[big][1] <= 1.0  # dominant shares of the traffic
    assert path.stats()["compression_ratio"] > 1.0


def test_lease_release_frees_pages_through_the_switch(path: KVPath) -> None:
    client = path.client
    tenant, keys = tenant_keys(path, "leased", 4)
    handles = store_pages(client, tenant, keys, [os.urandom(PAGE) for _ in keys])
    expires = client.grant_lease("lease-1", tenant, handles[:3], ttl_s=30.0)
    assert time.time() < expires <= time.time() + 30.0
    assert client.release_lease("lease-1", tenant) == 3
    assert client.release_lease("lease-1", tenant) == 0
    assert [h is None for h in client.lookup(tenant, keys)] == [True, True, True, False]


def test_rate_limited_tenant_waits_and_is_not_dropped(path: KVPath) -> None:
    tenant, keys = tenant_keys(path, "slow", 4)
    ray.get(path.switch.set_rate_limit.remote(tenant, 1_000_000))  # 1 MB/s, 50 kB burst
    pages = [os.urandom(PAGE) for _ in keys]
    start = time.monotonic()
    handles = store_pages(path.client, tenant, keys, pages)
    assert time.monotonic() - start > 0.15
    assert [path.client.read_page(h) for h in handles[:1]] == pages[:1]
    assert path.stats()["tenants"][str(tenant)]["waited_s"] > 0.15


def kv_cache(layers: int, blocks: int, block_floats: int, seed: int) -> list[torch.Tensor]:
    """Caches laid out as the CPU backend's: one [blocks, ...] tensor per layer."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(blocks, block_floats, generator=generator) for _ in range(layers)]


def one_sided(path: KVPath) -> tuple[PageIO, int]:
    layers, block_floats = 3, 1024
    return PageIO(path.client, block_floats * 4, layers), layers * block_floats * 4 + 16


def write(io: PageIO, handles: list, caches: list[torch.Tensor], blocks: list[int]) -> None:
    for layer, cache in enumerate(caches):
        io.write_layer(handles, layer, cache, blocks)


def read(io: PageIO, placed, caches: list[torch.Tensor], blocks: list[int]) -> None:
    for layer, cache in enumerate(caches):
        io.read_layer(placed, layer, cache, blocks)


def test_pages_written_one_sided_read_back_and_are_the_memory_nodes_own(path: KVPath) -> None:
    io, page_bytes = one_sided(path)
    tenant, _ = tenant_keys(path, "arena", 1)
    lease = path.client.alloc_pages(tenant, 4, page_bytes, "arena-lease")
    handles = list(lease_pages(lease))
    assert all(h.arena for h in handles) and len({h.memory_node for h in handles}) == 1
    source, target = kv_cache(3, 8, 1024, seed=1), kv_cache(3, 8, 1024, seed=2)
    write(io, handles, source, [2, 3, 4, 6])  # one run of three blocks, then another
    io.seal(tenant, [(h, 32) for h in handles], lease.nonce)
    placed = io.read(tenant, [(h, 32) for h in handles], lease.nonce)
    assert placed.failure is None
    read(io, placed, target, [0, 7, 1, 5])
    for got, want in zip(target, source, strict=True):
        assert [torch.equal(got[a], want[b]) for a, b in ((0, 2), (7, 3), (1, 4), (5, 6))] == [
            True
        ] * 4
    # The arena is the memory node's own memory: the switch path reads the same bytes.
    first = placed.page(0).numpy().tobytes()
    assert path.client.read_pages(tenant, handles[:1]) == [first]
    io.report()  # the bytes moved one-sided, accounted as if they had crossed the switch
    counted = path.stats()["tenants"][str(tenant)]
    assert (counted["bytes_in"], counted["bytes_out"]) == (4 * page_bytes, 5 * page_bytes)
    assert path.client.release_lease("arena-lease", tenant) == 4


def test_a_page_of_another_lease_or_not_yet_whole_is_refused(path: KVPath) -> None:
    io, page_bytes = one_sided(path)
    tenant, _ = tenant_keys(path, "stale", 1)
    lease = path.client.alloc_pages(tenant, 2, page_bytes, "stale-lease")
    first, second = lease_pages(lease)
    write(io, [first], kv_cache(3, 2, 1024, seed=3), [0])
    io.seal(tenant, [(first, 20)], lease.nonce)
    assert io.read(tenant, [(first, 20)], lease.nonce).failure is None
    for pages, nonce, why in (
        ([(first, 20), (second, 1)], lease.nonce, "not sealed"),  # never written
        ([(first, 20)], lease.nonce + 1, "not sealed"),  # as another lease would see it
        ([(first, 21)], lease.nonce, "holds 20 tokens, 21 needed"),
    ):
        placed = io.read(tenant, pages, nonce)
        assert why in placed.failure
        assert len(placed.places) == (1 if len(pages) == 2 else 0)  # the good ones before it
    path.client.release_lease("stale-lease", tenant)


def test_an_engine_on_another_machine_goes_through_the_switch(path: KVPath) -> None:
    io, page_bytes = one_sided(path)
    tenant, _ = tenant_keys(path, "far", 1)
    lease = path.client.alloc_pages(tenant, 2, page_bytes, "far-lease")
    # Handles whose arena is on no machine here, as another machine's engine sees them.
    far = [dataclasses.replace(h, arena="") for h in lease_pages(lease)]
    ops_before = path.stats()["ops"]
    source, target = kv_cache(3, 2, 1024, seed=4), kv_cache(3, 2, 1024, seed=5)
    write(io, far, source, [0, 1])
    io.seal(tenant, [(h, 32) for h in far], lease.nonce)
    read(io, io.read(tenant, [(h, 32) for h in far], lease.nonce), target, [0, 1])
    assert all(torch.equal(a, b) for a, b in zip(source, target, strict=True))
    ops = path.stats()["ops"]
    assert ops["WritePages"] - ops_before.get("WritePages", 0) == 1  # the step's pages at once
    assert ops["ReadPages"] - ops_before.get("ReadPages", 0) == 1
    path.client.release_lease("far-lease", tenant)


# Last: it leaves a dead memory node behind the switch.
def test_a_killed_memory_node_fails_reads_within_the_timeout(path: KVPath) -> None:
    doomed = memory_node("doomed")
    ray.get(path.switch.add_memory_node.remote("doomed", doomed))
    tenant, keys = tenant_keys(path, "doomed", 1)
    handle = path.client.alloc(tenant, keys[0], PAGE, memory_node="doomed")
    path.client.write_page(handle, os.urandom(PAGE))
    ray.kill(doomed)
    start = time.monotonic()
    with pytest.raises(KVTransferError) as caught:
        path.client.read_page(handle)
    assert caught.value.code in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
    assert time.monotonic() - start < path.client.timeout_s + 0.5
    assert path.client.lookup(tenant, keys) == [None]  # the other nodes still answer
    assert path.client.release_lease("never-granted", tenant) == 0
    with KVClient("127.0.0.1:1", timeout_s=1.0) as nowhere:  # no switch listens there
        start = time.monotonic()
        with pytest.raises(KVTransferError):
            nowhere.read_page(handle)
        assert time.monotonic() - start < 1.5


def test_kv_calls_without_a_genuine_capability_for_their_tenant_are_refused(
    path: KVPath,
) -> None:
    tenant, keys = tenant_keys(path, "guarded", 1)
    page = os.urandom(PAGE)
    handle = store_pages(path.client, tenant, keys, [page])[0]
    authority = CapabilityAuthority(KV_SECRET)
    version, owner, expiry, mac = authority.mint(tenant, ttl_s=-1.0).split(".")
    presented = {
        "none": None,
        "forged": CapabilityAuthority(b"a secret this deployment never had").mint(tenant),
        "expired": authority.mint(tenant, ttl_s=-1.0),
        "another tenant's": authority.mint(tenant_id("llama", "someone-else")),
        "expiry pushed back": ".".join((version, owner, str(int(expiry) + 10**9), mac)),
    }
    for case, capability in presented.items():
        with KVClient(path.client.address, timeout_s=5.0) as client:
            if capability is not None:
                client.present(tenant, capability)
            for call in (
                lambda: client.read_page(handle),
                lambda: client.write_page(handle, b"x" * 64),
                lambda: client.lookup(tenant, keys),
                lambda: client.release_lease("guarded-lease", tenant),
                lambda: client.alloc_pages(tenant, 1, PAGE, "guarded-lease"),
            ):
                with pytest.raises(KVTransferError) as caught:
                    call()
                assert caught.value.code == "PERMISSION_DENIED", case
    assert path.client.read_page(handle) == page  # nothing changed


def test_a_memory_node_checks_the_capability_again(path: KVPath) -> None:
    tenant, _ = tenant_keys(path, "direct", 1)
    request = kv_pb2.FenceRequest(tenant=tenant).SerializeToString()
    node = path.nodes["mem0"]
    with pytest.raises(ray.exceptions.RayTaskError, match="CapabilityError"):
        ray.get(node.fence.remote(request, []))
    granted = CapabilityAuthority(KV_SECRET).mint(tenant)
    assert kv_pb2.FenceReply.FromString(ray.get(node.fence.remote(request, [granted])))


def test_the_kv_actors_run_below_the_engines_priority_and_the_driver_does_not(
    path: KVPath,
) -> None:
    titles = ("ray::MemoryNode", "ray::SuperNICSwitch")
    actors = [
        process
        for process in psutil.process_iter(["cmdline"])
        if " ".join(process.info["cmdline"] or []).startswith(titles)
    ]
    assert len(actors) == len(NODES) + 1  # the memory nodes and the switch
    for process in actors:
        nices = {os.getpriority(os.PRIO_PROCESS, t.id) for t in process.threads()}
        assert min(nices) >= cpu_priority.SERVING_PATH_NICE, (process.pid, nices)
    assert os.getpriority(os.PRIO_PROCESS, 0) < cpu_priority.SERVING_PATH_NICE
