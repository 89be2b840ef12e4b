"""The Clio board API: real bytes, isolation between processes, ordering, atomics, retries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fpga_models.clio.board import ClioBoard
from fpga_models.clio.errors import (
    AccessViolation,
    ClioError,
    ForeignHandle,
    FreedAddress,
    OutOfRange,
    ReadOnlyViolation,
    UnmappedAddress,
)
from fpga_models.clio.memory import MappedMemory
from fpga_models.clio.params import MIB, ClioParams

PAGE = 4096
SMALL = ClioParams(page_size=PAGE, physical_memory_bytes=256 * PAGE, max_request_bytes=16 * PAGE)


@pytest.fixture
def board() -> ClioBoard:
    return ClioBoard(SMALL, seed=3)


def test_bytes_written_are_bytes_read_across_pages(board: ClioBoard) -> None:
    data = bytes(range(256)) * 40  # 10 KiB: spans three pages
    va, latency = board.ralloc(7, len(data) + 100)
    assert latency > 0
    assert board.rwrite(7, va + 50, data) > 0
    read, latency = board.rread(7, va + 50, len(data))
    assert read == data and latency > 0
    assert board.rread(7, va, 50).value == bytes(50)  # never written: zeros


def test_same_virtual_address_in_two_processes_holds_separate_bytes(board: ClioBoard) -> None:
    va1, _ = board.ralloc(1, PAGE)
    va2, _ = board.ralloc(2, PAGE)
    assert va1 == va2  # per-process address spaces
    board.rwrite(1, va1, b"secret of pid 1")
    assert board.rread(2, va2, 15).value == bytes(15)


def test_forged_and_foreign_addresses_are_refused(board: ClioBoard) -> None:
    va, _ = board.ralloc(1, PAGE)
    board.rwrite(1, va, b"secret")
    with pytest.raises(UnmappedAddress):
        board.rread(2, va, 6)  # pid 2 has no range there
    with pytest.raises(UnmappedAddress):
        board.rread(1, va + 10 * PAGE, 6)  # forged: never allocated
    with pytest.raises(UnmappedAddress):
        board.rread(1, 0, 1)  # the null page never maps
    with pytest.raises(AccessViolation):
        board.rwrite(2, va, b"overwrite")
    with pytest.raises(AccessViolation):
        board.rlock(2, va)
    assert board.rread(1, va, 6).value == b"secret"


def test_freed_pages_are_refused_and_scrubbed(board: ClioBoard) -> None:
    va, _ = board.ralloc(1, PAGE)
    board.rwrite(1, va, b"old data")
    board.rfree(1, va)
    with pytest.raises(FreedAddress):
        board.rread(1, va, 8)
    with pytest.raises(FreedAddress):
        board.rfree(1, va)
    again, _ = board.ralloc(2, PAGE)
    assert board.rread(2, again, 8).value == bytes(8)  # the frame was scrubbed


def test_out_of_range_lengths_are_refused(board: ClioBoard) -> None:
    va, _ = board.ralloc(1, 2 * PAGE)
    for offset, length in [(0, 0), (0, -1), (0, 2 * PAGE + 1), (2 * PAGE - 4, 8), (0, 17 * PAGE)]:
        with pytest.raises(OutOfRange):
            board.rread(1, va + offset, length)
    with pytest.raises(OutOfRange):
        board.rwrite(1, va + 2 * PAGE - 1, b"xy")


def test_read_only_ranges_refuse_writes_and_locks(board: ClioBoard) -> None:
    va, _ = board.ralloc(1, PAGE, writable=False)
    with pytest.raises(ReadOnlyViolation):
        board.rwrite(1, va, b"x")
    with pytest.raises(ReadOnlyViolation):
        board.rlock(1, va)
    assert board.rread(1, va, 4).value == bytes(4)


def test_handles_of_other_processes_are_refused(board: ClioBoard) -> None:
    va, _ = board.ralloc(1, PAGE)
    handle = board.rread_async(1, va, 4)
    with pytest.raises(ForeignHandle):
        board.rpoll(2, handle)
    with pytest.raises(ForeignHandle):
        board.rpoll(1, handle + 100)
    assert board.rpoll(1, handle).value == bytes(4)


@settings(max_examples=100, deadline=None)
@given(
    pid=st.integers(1, 4),
    va=st.integers(0, 12 * PAGE),
    nbytes=st.integers(-2, 3 * PAGE),
)
def test_a_process_only_ever_gets_its_own_bytes(pid: int, va: int, nbytes: int) -> None:
    board = ClioBoard(SMALL, seed=0)
    shadow: dict[int, tuple[int, bytes]] = {}
    for owner in (1, 2, 3):
        start, _ = board.ralloc(owner, 2 * PAGE + 100 * owner)
        secret = bytes([owner]) * (2 * PAGE + 100 * owner)
        board.rwrite(owner, start, secret)
        shadow[owner] = (start, secret)
    try:
        data, _ = board.rread(pid, va, nbytes)
    except ClioError:
        return
    start, secret = shadow[pid]
    assert data == secret[va - start : va - start + nbytes]


def test_async_requests_on_one_page_are_ordered(board: ClioBoard) -> None:
    va, _ = board.ralloc(1, 4 * PAGE)
    write = board.rwrite_async(1, va, b"new")
    read = board.rread_async(1, va, 3)
    assert board.rpoll(1, read).value == b"new"
    assert board.rpoll(1, write).latency_ns == 0.0  # done before the read it preceded


def test_async_requests_on_other_pages_overlap(board: ClioBoard) -> None:
    va, _ = board.ralloc(1, 4 * PAGE)
    single = board.rread(1, va, 8).latency_ns
    start = board.clock_ns(1)
    handles = [board.rread_async(1, va + page * PAGE, 8) for page in range(4)]
    for handle in handles:
        board.rpoll(1, handle)
    assert board.clock_ns(1) - start < 2 * single


def test_release_orders_later_requests_after_earlier_ones(board: ClioBoard) -> None:
    va, _ = board.ralloc(1, 4 * PAGE)
    board.rwrite_async(1, va, b"a")
    board.rrelease(1)
    start = board.clock_ns(1)
    other_page = board.rread_async(1, va + 2 * PAGE, 1)
    elapsed = board.rpoll(1, other_page).latency_ns + board.clock_ns(1) - start
    assert elapsed > 1.5 * board.latency.fixed_path_ns()
    board.rwrite_async(1, va + PAGE, b"b")
    assert board.rfence(1) > 0
    assert board.rfence(1) == 0


def test_lock_is_test_and_set(board: ClioBoard) -> None:
    va, _ = board.ralloc(1, PAGE)
    assert board.rlock(1, va).value is True
    assert board.rlock(1, va).value is False
    board.runlock(1, va)
    assert board.rlock(1, va).value is True
    with pytest.raises(OutOfRange):
        board.rlock(1, va + 3)  # not aligned


def test_lost_packets_are_retried_and_atomics_run_once() -> None:
    lossy = ClioBoard(SMALL.model_copy(update={"loss_rate": 0.25, "max_retries": 60}), seed=5)
    va, _ = lossy.ralloc(1, PAGE)
    for _ in range(100):
        assert lossy.rlock(1, va).value is True
        assert lossy.rlock(1, va).value is False
        lossy.runlock(1, va)
    stats = lossy.transport.stats
    assert stats.timeouts > 0 and stats.dedup_hits > 0
    assert stats.attempts > stats.requests


def test_dedup_buffer_is_three_timeouts_of_bandwidth() -> None:
    params = ClioParams()
    requests_per_ns = params.link_gbps / (params.framing.wire_bytes(0) * 8)
    assert params.dedup_buffer_entries == int(3 * params.request_timeout_ns * requests_per_ns)
    assert ClioBoard(params).transport.dedup.entries == params.dedup_buffer_entries


def test_a_mapped_range_lies_in_fixed_frames_of_a_buffer_clients_share() -> None:
    params = ClioParams(physical_memory_bytes=64 * MIB)
    shared = bytearray(params.physical_memory_bytes)
    board = ClioBoard(params, memory=MappedMemory(params.page_size, memoryview(shared)))
    va = board.ralloc(1, 2 * params.page_size).value
    frames, latency = board.rmap(1, va, 2 * params.page_size)
    assert len(frames) == 2 and len(set(frames)) == 2 and latency > 0
    # A client on the board's machine writes one-sided, where the frame sits in the buffer...
    at = frames[1] * params.page_size + 100
    shared[at : at + 5] = b"hello"
    # ...and the board's own path reads it at the virtual address, and the other way round.
    assert board.rread(1, va + params.page_size + 100, 5).value == b"hello"
    board.rwrite(1, va + 7, b"world")
    assert bytes(shared[frames[0] * params.page_size + 7 :][:5]) == b"world"
    assert board.rmap(1, va, 2 * params.page_size).value == frames  # fixed until rfree
    board.rfree(1, va)
    assert not any(shared[frames[0] * params.page_size :][: params.page_size])  # scrubbed
