"""`tetriserve bench kv`: write and read throughput of the real KV path against memcpy.

The same parts the deployment runs: a MemoryNode and a SuperNICSwitch actor on Ray, a
KVClient, and the engine-side data plane (actors/kv/page_io.py) that the KV connector uses.
For each page size, a request's worth of pages is allocated under one lease (control,
untimed); then, timed, each page's layer blocks are copied out of a KV cache laid out as the
CPU backend's and sealed (write), and read back, checked under the lease and copied into
another cache (read); the bytes moved one-sided are reported to the switch as they go. In
the same run, one copy of the same bytes between two buffers (`memcpy`) gives the
machine's limit. Each figure is the median of `--repeats` rounds.

`--through-switch` times the path an engine on another machine takes instead (the pages
staged and sent through the switch's gRPC service to the memory node).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from deploy.bench_args import positive
from deploy.local_ray import init_ray

PAGE_SIZES = (64 << 10, 512 << 10, 2 << 20)
LAYERS = 12  # the small model's: a page is one block of each layer
NAMESPACE = "tetriserve-bench-kv"


@dataclass(frozen=True, slots=True)
class KVFigures:
    page_bytes: int
    write_GBps: float
    read_GBps: float
    memcpy_GBps: float
    write_ratio: float
    read_ratio: float


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "kv",
        help="KV path write/read throughput against memcpy, for 64 KiB, 512 KiB, 2 MiB pages",
        description="Move KV pages through the real KV path (memory node, switch, the "
        "engine-side data plane) and time writes and reads against a memcpy of the same bytes.",
    )
    parser.add_argument(
        "--total-mib", type=positive, default=64, help="bytes moved per round (MiB)"
    )
    parser.add_argument("--repeats", type=positive, default=5, help="rounds per figure")
    parser.add_argument(
        "--through-switch",
        action="store_true",
        help="time the path of an engine on another machine (through the switch)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write JSON")
    parser.set_defaults(func=run)


def _median_seconds(action: Callable[[], Any], repeats: int, progress: tqdm) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
        progress.update(1)
    return statistics.median(timings)


def measure(
    client: Any, authority: Any, page_bytes: int, args: argparse.Namespace, progress: tqdm
) -> KVFigures:
    import torch

    from actors.kv.page_io import PageIO
    from actors.wire import lease_pages
    from cluster.kv_pages import TRAILER_BYTES, tenant_id

    block_bytes = (page_bytes - TRAILER_BYTES) // LAYERS // 64 * 64
    page = LAYERS * block_bytes + TRAILER_BYTES
    count = max(1, (args.total_mib << 20) // page)
    tenant = tenant_id("bench-kv", str(page_bytes))
    client.present(tenant, authority.mint(tenant))
    lease = client.alloc_pages(tenant, count, page, f"bench-kv-{page_bytes}", ttl_s=600.0)
    handles = lease_pages(lease)
    if args.through_switch:  # as an engine on another machine sees them: no arena
        handles = tuple(replace(handle, arena="") for handle in handles)
    io = PageIO(client, block_bytes, LAYERS)
    source = [torch.randn(count, block_bytes // 4) for _ in range(LAYERS)]
    target = [torch.empty_like(cache) for cache in source]
    pages = [(handle, 32) for handle in handles]

    blocks = list(range(count))

    def write() -> None:
        for layer, cache in enumerate(source):
            io.write_layer(handles, layer, cache, blocks)
        io.seal(tenant, pages, lease.nonce)

    def read() -> None:
        placed = io.read(tenant, pages, lease.nonce)
        if placed.failure is not None:
            raise RuntimeError(f"a page did not read back: {placed.failure}")
        for layer, cache in enumerate(target):
            io.read_layer(placed, layer, cache, blocks)

    flat_source = torch.cat([cache.view(-1) for cache in source])
    flat_target = torch.empty_like(flat_source)
    moved = count * page
    write_s = _median_seconds(write, args.repeats, progress)
    read_s = _median_seconds(read, args.repeats, progress)
    memcpy_s = _median_seconds(lambda: flat_target.copy_(flat_source), args.repeats, progress)
    if not all(torch.equal(a, b) for a, b in zip(source, target, strict=True)):
        raise RuntimeError("the pages read back differ from the pages written")
    io.report()
    client.release_lease(lease.lease_id, tenant)
    copied = flat_source.numel() * flat_source.element_size()
    write_gbps, read_gbps = moved / write_s / 1e9, moved / read_s / 1e9
    memcpy_gbps = copied / memcpy_s / 1e9
    return KVFigures(
        page_bytes=page,
        write_GBps=round(write_gbps, 3),
        read_GBps=round(read_gbps, 3),
        memcpy_GBps=round(memcpy_gbps, 3),
        write_ratio=round(write_gbps / memcpy_gbps, 3),
        read_ratio=round(read_gbps / memcpy_gbps, 3),
    )


def format_table(figures: list[KVFigures]) -> str:
    lines = ["page bytes   write GB/s   read GB/s   memcpy GB/s   write/memcpy   read/memcpy"]
    lines += [
        f"{f.page_bytes:>10}   {f.write_GBps:>10.3f}   {f.read_GBps:>9.3f}   "
        f"{f.memcpy_GBps:>11.3f}   {f.write_ratio:>12.3f}   {f.read_ratio:>11.3f}"
        for f in figures
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import ray

    from actors.kv.kv_client import KVClient
    from actors.memory.memory_node import MemoryNode
    from actors.switch.supernic_switch import SuperNICSwitch
    from cluster.kv_capability import CapabilityAuthority, deployment_secret

    address = os.environ.get("RAY_ADDRESS")
    init_ray(address=address, namespace=NAMESPACE, log_to_driver=False, ignore_reinit_error=True)
    secret = deployment_secret()
    node = (
        ray.remote(MemoryNode)
        .options(num_cpus=0, max_concurrency=1)
        .remote("memory-0", secret=secret)
    )
    switch = (
        ray.remote(SuperNICSwitch)
        .options(num_cpus=0, max_concurrency=1)
        .remote({"memory-0": node}, secret=secret)
    )
    path = "through the switch" if args.through_switch else "one-sided into the arena"
    print(f"KV path: {path}; {args.total_mib} MiB per round, median of {args.repeats} rounds")
    rounds = 3 * args.repeats * len(PAGE_SIZES)
    with (
        KVClient(ray.get(switch.address.remote()), timeout_s=120.0) as client,
        tqdm(total=rounds, unit="round", file=sys.stderr) as bar,
    ):
        authority = CapabilityAuthority(secret)
        figures = [measure(client, authority, size, args, bar) for size in PAGE_SIZES]
    ray.get(node.close.remote())
    for actor in (switch, node):
        ray.kill(actor)
    print(format_table(figures))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(f) for f in figures], indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
