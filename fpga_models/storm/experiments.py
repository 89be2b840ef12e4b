"""Storm's calibration experiments: unloaded round trips through the dataplane and read
throughput of a server NIC as connections outgrow its state cache."""

from __future__ import annotations

import statistics

from fpga_models.figure import Figure
from fpga_models.storm.dataplane import RpcRequest, StormCluster
from fpga_models.storm.nic import read_throughput_mops
from fpga_models.storm.params import StormParams

FEW_CONNECTIONS = 64
MANY_CONNECTIONS = 50_000


def round_trips_ns(samples: int = 200) -> tuple[float, float]:
    """Median one-sided read of one 128 B item and median RPC lookup, warm connections."""
    cluster = StormCluster(nodes=2, buckets_per_node=128)
    client = cluster.client(0)
    remote_keys = [key for key in range(1, 4 * samples) if client.table.owner(key) == 1][:samples]
    for key in remote_keys:
        cluster.insert(key, key.to_bytes(8, "little"))
    item, _ = cluster.regions[1].locate(remote_keys[0])
    assert item is not None
    item_bytes = cluster.params.item_bytes
    client.read(1, item.address, item_bytes)  # connection state now cached
    reads = [client.read(1, item.address, item_bytes).latency_ns for _ in range(samples)]
    rpcs = [client.rpc(1, RpcRequest("get", key)).latency_ns for key in remote_keys]
    return statistics.median(reads), statistics.median(rpcs)


def storm_figures(seed: int = 0) -> list[Figure]:
    read_ns, rpc_ns = round_trips_ns()
    params = StormParams()
    few = read_throughput_mops(params, FEW_CONNECTIONS, seed=seed)
    many = read_throughput_mops(params, MANY_CONNECTIONS, seed=seed)
    return [
        Figure("storm one-sided read round trip", read_ns / 1e3, 1.8, "us"),
        Figure("storm RPC round trip", rpc_ns / 1e3, 2.7, "us"),
        Figure(f"storm reads/s, {FEW_CONNECTIONS} connections", few, 40.0, "M/s"),
        Figure(f"storm reads/s, {MANY_CONNECTIONS:,} connections", many, 10.0, "M/s"),
    ]
