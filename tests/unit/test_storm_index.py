"""The memory node's page index on Storm: read-first lookups, OCC transactions, removal."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.kv_pages import PageKey, page_keys, tenant_id
from cluster.page_errors import IndexConflictError, OutOfMemoryError
from cluster.page_index import IndexUpdate, KeyIndex, LeaseRecord
from fpga_models.storm.page_index import StormPageIndex, page_table_key
from fpga_models.storm.params import StormParams
from fpga_models.storm.transactions import OccTransaction, Step

A = tenant_id("llama", None)
B = tenant_id("llama", "sql")
KEYS = page_keys("llama", None, list(range(16 * 64)), 16)


def mapped(index: StormPageIndex, keys: list[PageKey], base: int = 0x1000) -> dict[PageKey, int]:
    pages = {key: base + 0x100 * i for i, key in enumerate(keys)}
    for key, va in pages.items():
        index.apply(IndexUpdate(A, mapped={key: va}))
    return pages


def test_lookups_read_first_and_fall_back_to_rpc_only_for_overflow() -> None:
    # One slot per bucket: keys that share a bucket go to its overflow chain.
    index = StormPageIndex(StormParams(slots_per_bucket=1), buckets=16)
    pages = mapped(index, KEYS[:11])
    index.client.table.location_cache.clear()  # as a reader that has not seen these keys
    before = index.stats()
    found, latency = index.find(A, list(pages))
    assert found == list(pages.values()) and latency > 0
    stats = index.stats()
    assert stats["one_sided_reads"] - before["one_sided_reads"] == len(pages)
    overflowed = stats["lookup_rpcs"]
    assert 0 < overflowed < len(pages)
    assert index.find(A, list(pages))[0] == list(pages.values())  # overflow locations cached
    assert index.stats()["lookup_rpcs"] == overflowed
    assert index.find(B, list(pages))[0] == [None] * len(pages)  # keys are per tenant


def test_a_read_costs_less_than_an_rpc_lookup() -> None:
    index = StormPageIndex(StormParams(slots_per_bucket=1), buckets=16)
    pages = mapped(index, KEYS[:11])
    index.find(A, list(pages))  # connection state is warm from here on
    costs = {}
    for key in pages:
        index.client.table.location_cache.clear()
        rpcs = index.stats()["lookup_rpcs"]
        latency = index.find(A, [key])[1]
        costs[index.stats()["lookup_rpcs"] - rpcs] = latency
    assert costs.keys() == {0, 1} and costs[0] < costs[1]


def test_every_update_is_one_committed_transaction() -> None:
    index = StormPageIndex(buckets=64)
    pages = mapped(index, KEYS[:3])
    lease = LeaseRecord(A, expires_at=30.0, pages=2)
    pinned = dict(list(pages.items())[:2])
    index.apply(IndexUpdate(A, pinned=pinned, lease_id="l1", lease=lease))
    index.apply(IndexUpdate(A, unmapped=pinned, lease_id="l1"))
    stats = index.stats()
    assert (stats["tx_commits"], stats["tx_aborts"]) == (5, 0)
    assert stats["entries"] == 1  # the third page; unmapped keys and the lease are gone
    assert index.find(A, list(pages))[0] == [None, None, pages[KEYS[2]]]


def test_updates_that_contradict_the_index_are_refused() -> None:
    index = StormPageIndex(buckets=64)
    pages = mapped(index, KEYS[:2])
    key, va = next(iter(pages.items()))
    refused = [
        IndexUpdate(A, mapped={key: 0x9000}),  # mapped already
        IndexUpdate(A, unmapped={key: va + 1}),  # to another page
        IndexUpdate(A, pinned={KEYS[5]: 0x9000}),  # never mapped
        IndexUpdate(B, unmapped={key: va}),  # another tenant's key
    ]
    for update in refused:
        with pytest.raises(IndexConflictError):
            index.apply(update)
    index.apply(IndexUpdate(A, lease_id="l1", lease=LeaseRecord(A, 5.0, 0)))
    with pytest.raises(IndexConflictError):
        index.apply(IndexUpdate(B, lease_id="l1", lease=LeaseRecord(B, 5.0, 0)))
    assert index.find(A, list(pages))[0] == list(pages.values())


def test_a_conflicting_commit_aborts_the_transaction_which_retries() -> None:
    index = StormPageIndex(buckets=64)
    (key, va), *_ = mapped(index, KEYS[:1]).items()
    table_key, _ = page_table_key(A, key)
    interfered = []

    def body(tx: OccTransaction) -> Step:
        value = yield from tx.read(table_key)
        if not interfered:  # another requester commits a change between read and commit
            interfered.append(index.apply(IndexUpdate(A, unmapped={key: va})))
            index.apply(IndexUpdate(A, mapped={key: va}))  # back in the same slot
        tx.write(table_key, value)

    assert index.transact(body) > 0
    stats = index.stats()
    assert (stats["tx_aborts"], stats["tx_commits"]) == (1, 4)
    assert index.find(A, [key])[0] == [va]


def test_a_full_index_says_out_of_memory() -> None:
    index = StormPageIndex(StormParams(slots_per_bucket=1), buckets=4)
    with pytest.raises(OutOfMemoryError):
        mapped(index, KEYS[:5])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 11)), min_size=1, max_size=120))
def test_storm_index_answers_as_the_plain_index(ops: list[tuple[bool, int]]) -> None:
    """Mapping and unmapping keys over and over in a tiny table (overflow chains, slots and
    chain items reused) answers every lookup as the dictionary index does."""
    storm, plain = StormPageIndex(StormParams(slots_per_bucket=1), buckets=8), KeyIndex()
    for step, (put, slot) in enumerate(ops):
        key = KEYS[slot]
        (current,), _ = plain.find(A, [key])
        if put and current is None and len(plain.pages) < 5:  # 70% of 8 slots
            update = IndexUpdate(A, mapped={key: 0x1000 + step})
        elif not put and current is not None:
            update = IndexUpdate(A, unmapped={key: current})
        else:
            continue
        plain.apply(update)
        storm.apply(update)
        assert storm.find(A, KEYS[:12])[0] == plain.find(A, KEYS[:12])[0]
    assert storm.stats()["entries"] == len(plain.pages)
