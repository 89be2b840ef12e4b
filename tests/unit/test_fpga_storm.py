"""Storm: read-first lookups, the NIC's connection cache, and serializable OCC transactions."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fpga_models.storm.dataplane import RpcRequest, StormCluster
from fpga_models.storm.nic import ConnectionCache, read_throughput_mops
from fpga_models.storm.params import StormParams
from fpga_models.storm.transactions import (
    CommitLog,
    OccTransaction,
    run_interleaved,
    run_transaction,
)


def _balance(value: bytes) -> int:
    return int.from_bytes(value[:8], "little")


def _encode(amount: int) -> bytes:
    return amount.to_bytes(8, "little")


def test_lookups_resolve_with_one_read_and_fall_back_to_rpc_for_overflow() -> None:
    # One slot per bucket: keys that collide go to the overflow chain (a pointer chase).
    cluster = StormCluster(StormParams(slots_per_bucket=1), nodes=1, buckets_per_node=16)
    keys = range(1, 12)
    for key in keys:
        cluster.insert(key, _encode(key * 10))
    client = cluster.client(0)
    for key in keys:
        item, latency = client.get(key)
        assert item is not None and _balance(item.value) == key * 10 and latency > 0
    assert client.stats.reads == len(keys)
    overflowed = client.stats.rpcs
    assert 0 < overflowed < len(keys)
    for key in keys:  # overflow locations are cached now: reads alone resolve them
        assert client.get(key).value is not None
    assert client.stats.rpcs == overflowed
    assert client.get(999).value is None


def test_rpc_costs_more_than_a_read() -> None:
    cluster = StormCluster(nodes=2)
    cluster.insert(5, b"v")
    client = cluster.client(0)
    owner = client.table.owner(5)
    item, _ = cluster.regions[owner].locate(5)
    assert item is not None
    client.read(owner, item.address, 128)
    read_ns = client.read(owner, item.address, 128).latency_ns
    rpc_ns = client.rpc(owner, RpcRequest("get", 5)).latency_ns
    assert read_ns < rpc_ns


def test_connection_cache_is_lru() -> None:
    cache = ConnectionCache(2)
    assert [cache.access(c) for c in ["a", "b", "a", "c", "b", "a"]] == [
        False,
        False,
        True,
        False,
        False,
        False,
    ]


def test_read_throughput_collapses_once_connections_outgrow_the_cache() -> None:
    params = StormParams()
    rates = [read_throughput_mops(params, n, reads=20_000) for n in (16, 4_000, 16_000, 80_000)]
    assert rates[0] == rates[1]
    assert rates[1] > rates[2] > rates[3]
    assert rates[0] / rates[3] > 3


def _transfer(src: int, dst: int, amount: int):
    def body(tx: OccTransaction):
        source = _balance((yield from tx.read(src)))
        target = _balance((yield from tx.read(dst)))
        if source >= amount:
            tx.write(src, _encode(source - amount))
            tx.write(dst, _encode(target + amount))
        return source >= amount

    return body


transfers = st.lists(
    st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 150)).filter(
        lambda t: t[0] != t[1]
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(transfers, st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_interleaved_transfers_are_serializable(jobs, nodes: int, seed: int) -> None:
    cluster = StormCluster(nodes=nodes, buckets_per_node=8)
    accounts = range(1, 7)
    for account in accounts:
        cluster.insert(account, _encode(100))
    reader = cluster.client(0, thread=99)
    initial = {account: reader.get(account).value.value for account in accounts}
    log = CommitLog()
    attempts = run_interleaved(
        [(cluster.client(i % nodes, thread=i), _transfer(*job)) for i, job in enumerate(jobs)],
        seed=seed,
        log=log,
    )
    assert len(attempts) == len(jobs) == len(log.entries)
    final = {account: reader.get(account).value.value for account in accounts}
    assert sum(_balance(v) for v in final.values()) == 100 * len(accounts)
    assert all(_balance(v) >= 0 for v in final.values())
    # Replaying the committed transactions one at a time, in commit order, reproduces every
    # value each of them read and the final state: the interleaving was serializable.
    state = dict(initial)
    pad = cluster.regions[0].value_bytes
    for reads, writes in log.entries:
        assert all(state[key] == value for key, value in reads.items())
        state.update({key: value.ljust(pad, b"\0") for key, value in writes.items()})
    assert state == final
    assert not any(reader.get(account).value.locked for account in accounts)


def test_conflicting_transaction_aborts_and_retries() -> None:
    cluster = StormCluster(nodes=2)
    for account in (1, 2):
        cluster.insert(account, _encode(50))
    jobs = [(cluster.client(0, thread=t), _transfer(1, 2, 10)) for t in range(6)]
    attempts = run_interleaved(jobs, seed=7)
    assert max(attempts) > 1
    result, latency = run_transaction(cluster.client(1), _transfer(2, 1, 5))
    assert result is True and latency > 0
    balances = [_balance(cluster.client(0).get(a).value.value) for a in (1, 2)]
    assert balances == [0 + 5, 100 - 5]  # five transfers of 10 fit, the sixth finds 0
