"""Clio's virtual memory: the overflow-free hash page table, ralloc/rfree, and the LRU TLB."""

from __future__ import annotations

from collections import OrderedDict

from hypothesis import given, settings
from hypothesis import strategies as st

from fpga_models.clio.board import ClioBoard
from fpga_models.clio.errors import OutOfMemory
from fpga_models.clio.params import ClioParams
from fpga_models.clio.tlb import Tlb

PAGE = 4096
# 128 frames and as many PTE slots (8 buckets of 16): the table fills up, so rallocs retry.
CROWDED = ClioParams(
    page_size=PAGE, physical_memory_bytes=128 * PAGE, pte_slots_per_physical_page=1
)

alloc_ops = st.lists(
    st.one_of(
        st.tuples(st.just("alloc"), st.integers(1, 8), st.integers(1, 6 * PAGE)),
        st.tuples(st.just("free"), st.integers(0, 63), st.just(0)),
    ),
    min_size=1,
    max_size=60,
)


def _marker(pid: int, start: int) -> bytes:
    return bytes([pid, start // PAGE % 251])


def _first_and_last(pid: int, va: int, nbytes: int) -> tuple[bytes, bytes]:
    """What the first and last byte of a range hold after writing both markers."""
    first, last = _marker(pid, va)[:1], _marker(pid, va)[1:]
    return (last if nbytes == 1 else first), last


@settings(max_examples=80, deadline=None)
@given(alloc_ops)
def test_page_table_never_overflows_and_every_mapped_address_translates(ops) -> None:
    board = ClioBoard(CROWDED, seed=1)
    live: list[tuple[int, int, int]] = []  # (pid, va, nbytes)
    for op, a, b in ops:
        if op == "alloc":
            try:
                va, _ = board.ralloc(a, b)
            except OutOfMemory:
                continue
            board.rwrite(a, va, _marker(a, va)[:1])
            board.rwrite(a, va + b - 1, _marker(a, va)[1:])
            live.append((a, va, b))
        elif live:
            pid, va, _ = live.pop(a % len(live))
            board.rfree(pid, va)
        assert board.page_table.max_bucket_load() <= CROWDED.bucket_entries
        for pid, va, nbytes in live:
            for vpn in range(va // PAGE, (va + nbytes - 1) // PAGE + 1):
                entry = board.page_table.lookup(pid, vpn)
                assert entry is not None and entry.pid == pid
            first, last = _first_and_last(pid, va, nbytes)
            assert board.rread(pid, va, 1).value == first
            assert board.rread(pid, va + nbytes - 1, 1).value == last


def test_no_retries_below_half_full_and_retries_near_full() -> None:
    board = ClioBoard(ClioParams(page_size=PAGE, physical_memory_bytes=1024 * PAGE), seed=0)
    slots = board.page_table.capacity
    for pid in range(1, slots * 45 // 100):
        board.ralloc(pid, PAGE)
    assert board.slow_path.total_retries == 0
    try:
        for pid in range(slots * 45 // 100, slots):
            board.ralloc(pid, PAGE)
    except OutOfMemory:
        pass
    assert board.slow_path.total_retries > 0
    assert board.page_table.occupancy > 0.9
    assert board.page_table.max_bucket_load() <= board.params.bucket_entries


def test_ralloc_installs_invalid_ptes_and_first_touch_uses_the_free_page_buffer() -> None:
    board = ClioBoard(ClioParams(page_size=PAGE, physical_memory_bytes=64 * PAGE), seed=0)
    va, _ = board.ralloc(1, 3 * PAGE)
    entries = [board.page_table.lookup(1, vpn) for vpn in range(va // PAGE, va // PAGE + 3)]
    assert all(entry is not None and not entry.valid for entry in entries)
    for page in range(3):
        board.rwrite(1, va + page * PAGE, b"x")
    assert all(entry.valid for entry in entries if entry)
    assert board.slow_path.slow_faults == 0
    assert len(board.slow_path.free_page_buffer) == board.params.free_page_buffer_pages


def test_freed_frames_are_reused_first_so_memory_in_use_stays_small() -> None:
    board = ClioBoard(ClioParams(page_size=PAGE, physical_memory_bytes=64 * PAGE), seed=0)
    used: set[int] = set()
    for _ in range(40):  # alloc, map and free one 2-page region, 40 times over
        va, _ = board.ralloc(1, 2 * PAGE)
        frames, _ = board.rmap(1, va, 2 * PAGE)
        used.update(frames)
        board.rfree(1, va)
    # The same few frames come back, not a fresh pair each time (40 x 2 > 64 frames).
    assert len(used) <= 2 + board.params.free_page_buffer_pages


class ReferenceLRU:
    """The obvious LRU: a list, most recent last."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: OrderedDict[tuple[int, int], int] = OrderedDict()

    def lookup(self, key: tuple[int, int]) -> int | None:
        if key not in self.items:
            return None
        value = self.items.pop(key)
        self.items[key] = value
        return value

    def fill(self, key: tuple[int, int], value: int) -> None:
        self.items.pop(key, None)
        self.items[key] = value
        while len(self.items) > self.capacity:
            del self.items[next(iter(self.items))]

    def invalidate(self, key: tuple[int, int]) -> None:
        self.items.pop(key, None)


tlb_ops = st.lists(
    st.tuples(
        st.sampled_from(["lookup", "fill", "invalidate"]),
        st.tuples(st.integers(0, 2), st.integers(0, 5)),
        st.integers(0, 1000),
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 6), tlb_ops)
def test_tlb_matches_reference_lru(capacity: int, ops) -> None:
    tlb, reference = Tlb(capacity), ReferenceLRU(capacity)
    for op, key, value in ops:
        if op == "lookup":
            assert tlb.lookup(*key) == reference.lookup(key)
        elif op == "fill":
            tlb.fill(*key, value)
            reference.fill(key, value)
        else:
            tlb.invalidate(*key)
            reference.invalidate(key)
        assert tlb.keys() == list(reference.items)
