"""The memory node's page store on a fake in-memory board (and once on the Clio model), with
its content keys and leases in the plain index and in the Storm remote hash table."""

from __future__ import annotations

import os
import zlib

import pytest

from actors.memory.clio_memory import ClioMemory
from cluster.kv_pages import PageKey, page_keys, tenant_id
from cluster.page_index import KeyIndex
from cluster.page_store import (
    BadLengthError,
    CorruptPageError,
    ForeignPageError,
    FreedPageError,
    PageAccessError,
    PageStore,
    UnmappedAddressError,
)
from fpga_models.storm.page_index import StormPageIndex

PAGE = 64 * 1024
ARENA = 1 << 20
A = tenant_id("llama", None)
B = tenant_id("llama", "sql")


class FakeMemory:
    """A board that keeps regions as bytearrays; every operation costs 1 ns."""

    def __init__(self) -> None:
        self.regions: dict[tuple[int, int], bytearray] = {}
        self.locks: set[tuple[int, int]] = set()
        self.reads = 0
        self._next = 0x10000

    def alloc_region(self, tenant: int, nbytes: int) -> tuple[int, float]:
        base, self._next = self._next, self._next + nbytes
        self.regions[tenant, base] = bytearray(nbytes)
        return base, 1.0

    def free_region(self, tenant: int, address: int) -> float:
        del self.regions[tenant, address]
        return 1.0

    def _locate(self, tenant: int, address: int) -> tuple[bytearray, int]:
        base = max(b for owner, b in self.regions if owner == tenant and b <= address)
        return self.regions[tenant, base], address - base

    def write(self, tenant: int, address: int, data: bytes) -> float:
        region, at = self._locate(tenant, address)
        region[at : at + len(data)] = data
        return 1.0

    def read(self, tenant: int, address: int, nbytes: int) -> tuple[bytes, float]:
        self.reads += 1
        region, at = self._locate(tenant, address)
        return bytes(region[at : at + nbytes]), 1.0

    def lock(self, tenant: int, address: int) -> tuple[bool, float]:
        taken = (tenant, address) in self.locks
        self.locks.add((tenant, address))
        return not taken, 1.0

    def unlock(self, tenant: int, address: int) -> float:
        self.locks.discard((tenant, address))
        return 1.0

    def fence(self, tenant: int) -> float:
        return 1.0


def keys(adapter: str | None, count: int) -> list[PageKey]:
    return page_keys("llama", adapter, list(range(16 * count)), 16)


@pytest.fixture
def memory() -> FakeMemory:
    return FakeMemory()


@pytest.fixture(params=["plain index", "storm index"])
def store(memory: FakeMemory, request: pytest.FixtureRequest) -> PageStore:
    index = StormPageIndex(buckets=32) if request.param == "storm index" else None
    return PageStore(memory, node="mem0", arena_bytes=ARENA, index=index)


def test_alloc_is_idempotent_per_key(store: PageStore) -> None:
    first, second = keys(None, 2)
    handle, existed, latency = store.alloc(A, first, PAGE)
    again, existed_again, _ = store.alloc(A, first, PAGE)
    other, _, _ = store.alloc(A, second, PAGE)
    assert (existed, existed_again) == (False, True)
    board_ns = 1.0  # the fake board's region; the Storm index adds its reads and RPCs
    assert latency == board_ns if isinstance(store.index, KeyIndex) else latency > board_ns
    assert again == handle and handle.memory_node == "mem0" and handle.key == first
    assert other.virtual_address == handle.virtual_address + PAGE
    with pytest.raises(BadLengthError):
        store.alloc(A, first, PAGE // 2)
    assert store.stats()["pages_in_use"] == 2 and store.stats()["alloc_hits"] == 1


def test_write_read_round_trip_at_offsets(store: PageStore) -> None:
    handle, _, _ = store.alloc(A, keys(None, 1)[0], PAGE)
    page = os.urandom(PAGE)
    store.write(A, handle.virtual_address, page)
    assert store.read(A, handle.virtual_address, PAGE)[0] == page
    assert store.read(A, handle.virtual_address + 1000, 24)[0] == page[1000:1024]
    store.write(A, handle.virtual_address + PAGE - 8, b"12345678")
    assert store.read(A, handle.virtual_address + PAGE - 16, 16)[0] == page[-16:-8] + b"12345678"


def written(store: PageStore, tenant: int, key: PageKey) -> object:
    """A page allocated for `key` and written whole."""
    handle = store.alloc(tenant, key, PAGE)[0]
    store.write(tenant, handle.virtual_address, bytes(PAGE))
    return store.lookup(tenant, [key])[0]


def test_lookup_finds_pages_of_the_tenant_only(store: PageStore) -> None:
    ka, kb = keys(None, 3), keys("sql", 1)
    made = [written(store, A, key) for key in ka[:2]]
    written(store, B, kb[0])
    assert store.lookup(A, ka) == [*made, None]
    assert store.lookup(A, kb) == [None]
    assert store.lookup(tenant_id("other", None), ka) == [None, None, None]


def test_whole_page_checksum_is_kept_and_verified(store: PageStore, memory: FakeMemory) -> None:
    key = keys(None, 1)[0]
    handle, _, _ = store.alloc(A, key, PAGE)
    page = os.urandom(PAGE)
    store.write(A, handle.virtual_address, page)
    assert store.lookup(A, [key])[0].checksum == zlib.crc32(page)
    store.read(A, handle.virtual_address, PAGE)
    assert store.stats()["verified_reads"] == 1
    next(iter(memory.regions.values()))[0] ^= 0xFF  # the board flips bits of the page
    with pytest.raises(CorruptPageError):
        store.read(A, handle.virtual_address, PAGE)


@pytest.mark.parametrize("op", ["read", "write", "free", "lock", "lease"])
def test_another_tenants_page_is_refused(store: PageStore, memory: FakeMemory, op: str) -> None:
    theirs, _, _ = store.alloc(B, keys("sql", 1)[0], PAGE)
    store.write(B, theirs.virtual_address, b"secret" * 10)
    store.alloc(A, keys(None, 1)[0], PAGE)
    reads = memory.reads
    with pytest.raises(ForeignPageError):
        attempt(store, A, op, theirs.virtual_address, 16)
    assert memory.reads == reads  # nothing was read on the refused tenant's behalf
    assert store.read(B, theirs.virtual_address, 6)[0] == b"secret"


def attempt(store: PageStore, tenant: int, op: str, va: int, length: int) -> object:
    calls = {
        "read": lambda: store.read(tenant, va, length),
        "write": lambda: store.write(tenant, va, b"x" * length),
        "free": lambda: store.free(tenant, va),
        "lock": lambda: store.lock(tenant, va),
        "lease": lambda: store.grant_lease("l", tenant, [va], 30.0, now=0.0),
    }
    return calls[op]()


@pytest.mark.parametrize("op", ["read", "write", "free", "lock", "lease"])
def test_forged_addresses_are_refused(store: PageStore, op: str) -> None:
    handle, _, _ = store.alloc(A, keys(None, 1)[0], PAGE)
    forged = [0, 12345, handle.virtual_address + ARENA, handle.virtual_address ^ (1 << 50)]
    for va in forged:
        with pytest.raises(UnmappedAddressError):
            attempt(store, A, op, va, 16)


def test_freed_pages_and_bad_lengths_are_refused(store: PageStore) -> None:
    key = keys(None, 1)[0]
    handle, _, _ = store.alloc(A, key, PAGE)
    for length in (0, -1, PAGE + 1):
        with pytest.raises(BadLengthError):
            store.read(A, handle.virtual_address, length)
    with pytest.raises(BadLengthError):
        store.write(A, handle.virtual_address + PAGE - 4, b"12345678")
    with pytest.raises(BadLengthError):
        store.alloc(A, None, ARENA + 1)
    with pytest.raises(ForeignPageError):
        store.alloc(A, keys("sql", 1)[0], PAGE)  # a key of another (model, adapter)
    store.free(A, handle.virtual_address)
    with pytest.raises(FreedPageError):
        store.read(A, handle.virtual_address, 16)
    with pytest.raises(FreedPageError):
        store.free(A, handle.virtual_address)
    assert store.lookup(A, [key]) == [None]
    errors = (ForeignPageError, FreedPageError, UnmappedAddressError, BadLengthError)
    assert all(issubclass(error, PageAccessError) for error in errors)


def test_lookup_length_counts_bytes_written_without_a_gap(store: PageStore) -> None:
    key = keys(None, 1)[0]
    handle = store.alloc(A, key, PAGE)[0]
    assert store.lookup(A, [key]) == [None]  # allocated, nothing written yet
    store.write(A, handle.virtual_address + 4096, b"x" * 4096)  # a gap before it
    assert store.lookup(A, [key]) == [None]
    store.write(A, handle.virtual_address, b"y" * 4096)
    assert store.lookup(A, [key])[0].length == 8192
    store.write(A, handle.virtual_address + 8192, b"z" * (PAGE - 8192))
    assert store.lookup(A, [key])[0].length == PAGE


def test_released_lease_frees_its_pages_once(store: PageStore) -> None:
    made = [written(store, A, key) for key in keys(None, 3)]
    store.grant_lease("l1", A, [h.virtual_address for h in made[:2]], ttl_s=30.0, now=0.0)
    store.free(A, made[0].virtual_address)  # freed on its own before the lease ends
    assert store.release_lease("l1", A) == 1
    assert store.release_lease("l1", A) == 0 and store.expire(now=100.0) == 0
    assert store.lookup(A, [h.key for h in made]) == [None, None, made[2]]
    assert store.stats()["pages_in_use"] == 1


def test_a_page_two_leases_pin_is_freed_when_the_second_ends(store: PageStore) -> None:
    shared = written(store, A, keys(None, 1)[0])
    store.grant_lease("first", A, [shared.virtual_address], ttl_s=30.0, now=0.0)
    store.grant_lease("second", A, [shared.virtual_address], ttl_s=30.0, now=0.0)
    assert store.release_lease("first", A) == 0
    assert store.read(A, shared.virtual_address, PAGE)[0]  # the second request still reads it
    assert store.release_lease("second", A) == 1
    assert store.stats()["pages_in_use"] == 0


def test_expired_lease_frees_pages_once_and_never_a_reused_address(store: PageStore) -> None:
    ka = keys(None, 3)
    made = [written(store, A, key) for key in ka[:2]]
    store.grant_lease("l1", A, [made[0].virtual_address], ttl_s=10.0, now=0.0)
    store.grant_lease("l2", A, [made[1].virtual_address], ttl_s=5.0, now=0.0)
    assert store.grant_lease("l1", A, [], ttl_s=20.0, now=0.0) == 20.0  # extended
    assert store.expire(now=9.0) == 1  # l2 ended: made[1] freed
    again, existed, _ = store.alloc(A, ka[2], PAGE)  # takes made[1]'s freed slot
    assert not existed and again.virtual_address == made[1].virtual_address
    again = written(store, A, ka[2])
    assert store.expire(now=19.0) == 0
    assert store.expire(now=20.0) == 1  # only made[0]: the reused address survives
    assert store.expire(now=99.0) == 0
    assert store.lookup(A, ka) == [None, None, again]
    stats = store.stats()
    assert (stats["lease_expiries"], stats["leases_active"], stats["pages_in_use"]) == (2, 0, 1)
    store.grant_lease("l3", A, [again.virtual_address], 5.0, now=0.0)
    with pytest.raises(ForeignPageError):
        store.grant_lease("l3", B, [], 5.0, now=0.0)


def test_counters_and_board_memory_follow_the_pages(store: PageStore, memory: FakeMemory) -> None:
    per_arena = ARENA // PAGE
    made = [store.alloc(A, key, PAGE)[0] for key in keys(None, 2 * per_arena + 1)]
    assert len(memory.regions) == 3
    for handle in made[:3]:
        store.write(A, handle.virtual_address, bytes(PAGE))
        store.read(A, handle.virtual_address, 100)
    stats = store.stats()
    assert stats["pages_in_use"] == len(made) and stats["bytes_stored"] == len(made) * PAGE
    assert (stats["writes"], stats["bytes_written"]) == (3, 3 * PAGE)
    assert (stats["reads"], stats["bytes_read"]) == (3, 300)
    for handle in made[per_arena:]:
        store.free(A, handle.virtual_address)
    assert len(memory.regions) == 1 and store.stats()["region_bytes"] == ARENA
    assert store.stats()["bytes_stored"] == per_arena * PAGE


def test_lock_word_is_test_and_set(store: PageStore) -> None:
    va = store.alloc(A, None, PAGE)[0].virtual_address
    assert [store.lock(A, va)[0], store.lock(A, va)[0]] == [True, False]
    store.lock(A, va, release=True)
    assert store.lock(A, va)[0] is True


def test_store_on_the_clio_board_model() -> None:
    """Tenants are Clio processes; every answer carries the board's modelled latency."""
    store = PageStore(ClioMemory(), node="clio", arena_bytes=4 << 20)
    for tenant, adapter in ((A, None), (B, "sql")):
        handle, _, _ = store.alloc(tenant, keys(adapter, 1)[0], PAGE)
        page = os.urandom(PAGE)
        assert store.write(tenant, handle.virtual_address, page) > 2_500  # ns
        data, latency = store.read(tenant, handle.virtual_address, PAGE)
        assert data == page and latency > 2_500
    with pytest.raises(ForeignPageError):
        store.read(A, handle.virtual_address, 16)


def test_another_tenants_lease_is_refused_and_kept(store: PageStore) -> None:
    made = written(store, A, keys(None, 1)[0])
    store.grant_lease("mine", A, [made.virtual_address], ttl_s=30.0, now=0.0)
    with pytest.raises(ForeignPageError):
        store.release_lease("mine", B)
    assert store.release_lease("mine", A) == 1


def test_pages_are_counted_per_tenant_and_a_tenant_left_empty_shows_zero(
    store: PageStore,
) -> None:
    made = [written(store, A, key) for key in keys(None, 3)]
    written(store, B, keys("sql", 1)[0])
    assert store.pages_by_tenant() == {A: 3, B: 1}
    for handle in made:
        store.free(A, handle.virtual_address)
    assert store.pages_by_tenant() == {A: 0, B: 1}
