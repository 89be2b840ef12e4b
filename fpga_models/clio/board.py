"""A Clio memory node as its clients see it: the board plus each process's client library.

    board = ClioBoard(ClioParams(), seed=0)
    va, ns = board.ralloc(pid, 1 << 20)          # slow path, installs invalid PTEs
    frames, ns = board.rmap(pid, va, 1 << 20)    # pages faulted in for one-sided access
    ns = board.rwrite(pid, va, b"kv page bytes")  # fast path, real bytes stored
    data, ns = board.rread(pid, va, 13)
    handle = board.rread_async(pid, va, 13); data, ns = board.rpoll(pid, handle)

Every call returns its result and its modelled latency in nanoseconds; each process has its
own simulated clock. Sync requests are strictly ordered. Async requests are release-ordered:
the library delays a request that conflicts with an in-flight one on the same page (read
after write, write after read or write), `rrelease` makes later requests wait for all earlier
ones without blocking the caller, and `rfence` blocks the caller until everything is done.
Data effects apply in program order, which those dependencies make equal to completion
order. Errors of async requests surface at `rpoll`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from fpga_models.clio.allocator import SlowPath
from fpga_models.clio.errors import ClioError, ForeignHandle
from fpga_models.clio.fast_path import LOCK_WORD_BYTES, BoardWork, FastPath
from fpga_models.clio.latency import ClioLatencyModel
from fpga_models.clio.memory import MappedMemory, PhysicalMemory
from fpga_models.clio.page_table import HashPageTable
from fpga_models.clio.params import ClioParams
from fpga_models.clio.tlb import Tlb
from fpga_models.clio.transport import Transport
from fpga_models.timed import Timed

T = TypeVar("T")


@dataclass(slots=True)
class _AsyncRequest:
    done_ns: float
    value: bytes | None = None
    error: ClioError | None = None


@dataclass(slots=True)
class _ClientLibrary:
    """One process's library state: its clock, in-flight requests and page dependencies."""

    now_ns: float = 0.0
    release_barrier_ns: float = 0.0
    pending: dict[int, _AsyncRequest] = field(default_factory=dict)
    last_write_done: dict[int, float] = field(default_factory=dict)  # vpn -> time
    last_access_done: dict[int, float] = field(default_factory=dict)

    def earliest_start(self, vpns: range, write: bool) -> float:
        deps = self.last_access_done if write else self.last_write_done
        return max([self.release_barrier_ns, *(deps.get(vpn, 0.0) for vpn in vpns)])

    def record(self, vpns: range, write: bool, done_ns: float) -> None:
        for vpn in vpns:
            self.last_access_done[vpn] = max(self.last_access_done.get(vpn, 0.0), done_ns)
            if write:
                self.last_write_done[vpn] = max(self.last_write_done.get(vpn, 0.0), done_ns)

    def latest_done(self) -> float:
        return max([self.now_ns, *self.last_access_done.values()])


class ClioBoard:
    def __init__(
        self,
        params: ClioParams | None = None,
        *,
        seed: int = 0,
        memory: PhysicalMemory | MappedMemory | None = None,
    ) -> None:
        self.params = params or ClioParams()
        latency_seed, transport_seed = np.random.SeedSequence(seed).spawn(2)
        self.page_table = HashPageTable(self.params.pte_slots, self.params.bucket_entries)
        self.tlb = Tlb(self.params.tlb_entries)
        self.memory = memory if memory is not None else PhysicalMemory(self.params.page_size)
        self.slow_path = SlowPath(self.params, self.page_table, self.tlb)
        self.fast_path = FastPath(
            self.params, self.page_table, self.tlb, self.slow_path, self.memory
        )
        self.latency = ClioLatencyModel(self.params, int(latency_seed.generate_state(1)[0]))
        self.transport = Transport(self.params, np.random.default_rng(transport_seed))
        self._clients: dict[int, _ClientLibrary] = {}
        self._next_handle = 1

    def clock_ns(self, pid: int) -> float:
        return self._client(pid).now_ns

    # --- slow path ----------------------------------------------------------------------------
    def ralloc(self, pid: int, nbytes: int, *, writable: bool = True) -> Timed[int]:
        def execute() -> tuple[int, float]:
            outcome = self.slow_path.ralloc(pid, nbytes, writable)
            cost = self.latency.slow_path_ns(outcome.buckets_probed, outcome.pages, True)
            return outcome.va, cost

        va, latency = self._sync(pid, execute, mutating=True)
        return Timed(va, latency)

    def rfree(self, pid: int, va: int) -> float:
        def execute() -> tuple[None, float]:
            released = self.slow_path.rfree(pid, va)
            for ppn in released:
                self.memory.scrub(ppn)
            return None, self.latency.slow_path_ns(0, len(released), False)

        return self._sync(pid, execute, mutating=True)[1]

    def rmap(self, pid: int, va: int, nbytes: int) -> Timed[list[int]]:
        """Opens [va, va + nbytes) to one-sided access by clients on the board's machine,
        as an RDMA memory registration does: every page is faulted in and its frame fixed
        until rfree; the frames, in address order, and one translation round trip each."""

        def execute() -> tuple[list[int], float]:
            frames, work = self.fast_path.frames(pid, va, nbytes)
            return frames, self.latency.data_request_ns(0, 0, work)

        frames, latency = self._sync(pid, execute, mutating=True)
        return Timed(frames, latency)

    # --- synchronous data requests -------------------------------------------------------------
    def rread(self, pid: int, va: int, nbytes: int) -> Timed[bytes]:
        return Timed(*self._data(pid, va, nbytes, write=False, run=self._reader(pid, va, nbytes)))

    def rwrite(self, pid: int, va: int, data: bytes) -> float:
        return self._data(pid, va, len(data), write=True, run=self._writer(pid, va, data))[1]

    def rlock(self, pid: int, va: int) -> Timed[bool]:
        """Test-and-set on the 8-byte lock word at `va`: True when this call took the lock."""

        def run() -> tuple[bool, float]:
            acquired, work = self.fast_path.test_and_set(pid, va)
            return acquired, self.latency.data_request_ns(LOCK_WORD_BYTES, LOCK_WORD_BYTES, work)

        return Timed(*self._data(pid, va, LOCK_WORD_BYTES, write=True, run=run))

    def runlock(self, pid: int, va: int) -> float:
        def run() -> tuple[None, float]:
            work = self.fast_path.clear(pid, va)
            return None, self.latency.data_request_ns(LOCK_WORD_BYTES, 0, work)

        return self._data(pid, va, LOCK_WORD_BYTES, write=True, run=run)[1]

    # --- asynchronous data requests ------------------------------------------------------------
    def rread_async(self, pid: int, va: int, nbytes: int) -> int:
        return self._issue(pid, va, nbytes, write=False, run=self._reader(pid, va, nbytes))

    def rwrite_async(self, pid: int, va: int, data: bytes) -> int:
        return self._issue(pid, va, len(data), write=True, run=self._writer(pid, va, data))

    def rpoll(self, pid: int, handle: int) -> Timed[bytes | None]:
        """Wait for an async request of this process; its bytes (reads) and the time waited."""
        client = self._client(pid)
        request = client.pending.pop(handle, None)
        if request is None:
            raise ForeignHandle(f"pid {pid} has no request {handle}")
        waited = max(0.0, request.done_ns - client.now_ns)
        client.now_ns += waited
        if request.error is not None:
            raise request.error
        return Timed(request.value, waited)

    def rfence(self, pid: int) -> float:
        """Block until every earlier request of this process has completed."""
        client = self._client(pid)
        waited = client.latest_done() - client.now_ns
        client.now_ns += waited
        return waited

    def rrelease(self, pid: int) -> float:
        """Later requests start only after every earlier one completed; the caller goes on."""
        client = self._client(pid)
        client.release_barrier_ns = max(client.release_barrier_ns, client.latest_done())
        client.now_ns += self.latency.issue_ns()
        return self.latency.issue_ns()

    # --- plumbing -----------------------------------------------------------------------------
    def _client(self, pid: int) -> _ClientLibrary:
        return self._clients.setdefault(pid, _ClientLibrary())

    def _reader(self, pid: int, va: int, nbytes: int) -> Callable[[], tuple[bytes, float]]:
        def run() -> tuple[bytes, float]:
            data, work = self.fast_path.read(pid, va, nbytes)
            return data, self.latency.data_request_ns(0, nbytes, work)

        return run

    def _writer(self, pid: int, va: int, data: bytes) -> Callable[[], tuple[None, float]]:
        def run() -> tuple[None, float]:
            work: BoardWork = self.fast_path.write(pid, va, bytes(data))
            return None, self.latency.data_request_ns(len(data), 0, work)

        return run

    def _pages(self, va: int, nbytes: int) -> range:
        page_size = self.params.page_size
        return range(va // page_size, (va + max(nbytes, 1) - 1) // page_size + 1)

    def _sync(
        self, pid: int, execute: Callable[[], tuple[T, float]], mutating: bool
    ) -> tuple[T, float]:
        client = self._client(pid)
        value, latency = self._deliver(execute, mutating)
        client.now_ns += latency
        return value, latency

    def _data(
        self, pid: int, va: int, nbytes: int, *, write: bool, run: Callable[[], tuple[T, float]]
    ) -> tuple[T, float]:
        """A sync request: starts once its page dependencies allow, the caller waits for it."""
        client = self._client(pid)
        pages = self._pages(va, nbytes)
        start = max(client.now_ns, client.earliest_start(pages, write))
        value, cost = self._deliver(run, write)
        client.record(pages, write, start + cost)
        latency = start + cost - client.now_ns
        client.now_ns = start + cost
        return value, latency

    def _issue(
        self, pid: int, va: int, nbytes: int, *, write: bool, run: Callable[[], tuple[T, float]]
    ) -> int:
        """An async request: the caller pays only the library's issue time and goes on."""
        client = self._client(pid)
        pages = self._pages(va, nbytes)
        start = max(client.now_ns, client.earliest_start(pages, write))
        client.now_ns += self.latency.issue_ns()
        try:
            value, cost = self._deliver(run, write)
            request = _AsyncRequest(done_ns=start + cost, value=value)
        except ClioError as error:
            request = _AsyncRequest(done_ns=start + self._round_trip_ns(), error=error)
        client.record(pages, write, request.done_ns)
        handle, self._next_handle = self._next_handle, self._next_handle + 1
        client.pending[handle] = request
        return handle

    def _deliver(self, execute: Callable[[], tuple[T, float]], mutating: bool) -> tuple[T, float]:
        try:
            return self.transport.deliver(
                execute, mutating=mutating, round_trip_ns=self._round_trip_ns()
            )
        finally:
            self.slow_path.refill()

    def _round_trip_ns(self) -> float:
        return self.latency.fixed_path_ns() + self.latency.wire_ns(0, 0)
