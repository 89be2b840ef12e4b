"""Serializable transactions over Storm: optimistic concurrency control with two-phase commit.

Execute: reads are one-sided (through the dataplane) and kept as local copies with their
versions; writes stay local. Commit: (1) lock every written item through an RPC to its owner,
which refuses if the item is locked or changed since it was read; (2) validate every item
only read by re-reading its version with a one-sided read; (3) send write RPCs that install
the new value, bump the version and unlock. Any refusal aborts: held locks are released and
the caller retries. A transaction is a generator that yields after every remote operation,
so a scheduler can interleave many of them step by step.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np

from fpga_models.storm.dataplane import RpcAnswer, RpcRequest, StormClient
from fpga_models.timed import Timed

Step = Generator[None, None, object]
TransactionBody = Callable[["OccTransaction"], Step]


class TxAborted(Exception):
    """The transaction saw a locked or changed item and must start again."""


@dataclass(frozen=True, slots=True)
class _ReadRecord:
    version: int
    node: int
    address: int
    value: bytes


@dataclass(slots=True)
class CommitLog:
    """What each committed transaction read and wrote, and its serialization point: taken once
    every write lock is held and before the first validation read, a moment at which all its
    reads are still current and no one else can change what it writes."""

    _tickets: int = 0
    _entries: list[tuple[int, dict[int, bytes], dict[int, bytes]]] = field(default_factory=list)

    def ticket(self) -> int:
        self._tickets += 1
        return self._tickets

    def record(self, ticket: int, reads: dict[int, bytes], writes: dict[int, bytes]) -> None:
        self._entries.append((ticket, reads, writes))

    @property
    def entries(self) -> list[tuple[dict[int, bytes], dict[int, bytes]]]:
        """(reads, writes) of committed transactions in serialization order."""
        return [(reads, writes) for _, reads, writes in sorted(self._entries, key=lambda e: e[0])]


class OccTransaction:
    def __init__(self, client: StormClient, log: CommitLog | None = None) -> None:
        self.client = client
        self.log = log
        self.latency_ns = 0.0
        self._reads: dict[int, _ReadRecord] = {}
        self._writes: dict[int, bytes] = {}

    def read(self, key: int) -> Generator[None, None, bytes]:
        if key in self._writes:
            return self._writes[key]
        if key in self._reads:
            return self._reads[key].value
        item, elapsed = self.client.get(key)
        self.latency_ns += elapsed
        yield
        if item is None:
            raise KeyError(key)
        if item.locked:
            raise TxAborted(f"key {key} is locked by a committing transaction")
        node = self.client.table.owner(key)
        self._reads[key] = _ReadRecord(item.version, node, item.address, item.value)
        return item.value

    def write(self, key: int, value: bytes) -> None:
        self._writes[key] = value

    def commit(self) -> Generator[None, None, bool]:
        locked: list[int] = []
        for key in sorted(self._writes):
            record = self._reads.get(key)
            expected = record.version if record else None
            ok = yield from self._rpc(RpcRequest("lock", key, expected_version=expected))
            if not ok:
                yield from self._unlock(locked)
                return False
            locked.append(key)
        ticket = self.log.ticket() if self.log is not None else 0
        for key, record in self._reads.items():
            if key in self._writes:
                continue
            raw, elapsed = self.client.read(
                record.node, record.address, self.client.table.regions[record.node].item_bytes
            )
            self.latency_ns += elapsed
            yield
            item = self.client.table.regions[record.node].decode_item(raw, record.address)
            if item is None or item.key != key or item.locked or item.version != record.version:
                yield from self._unlock(locked)
                return False
        if self.log is not None:
            reads = {key: record.value for key, record in self._reads.items()}
            self.log.record(ticket, reads, dict(self._writes))
        for key, value in self._writes.items():
            yield from self._rpc(RpcRequest("commit", key, value=value))
        return True

    def _rpc(self, request: RpcRequest) -> Generator[None, None, RpcAnswer]:
        owner = self.client.table.owner(request.key)
        answer, elapsed = self.client.rpc(owner, request)
        self.latency_ns += elapsed
        yield
        return answer

    def _unlock(self, keys: list[int]) -> Generator[None, None, None]:
        for key in keys:
            yield from self._rpc(RpcRequest("unlock", key))


def attempt(client: StormClient, body: TransactionBody, log: CommitLog | None) -> Step:
    """One try: run the body, then commit. Returns (committed, body result, latency)."""
    tx = OccTransaction(client, log)
    try:
        result = yield from body(tx)
    except TxAborted:
        return False, None, tx.latency_ns
    committed = yield from tx.commit()
    return committed, result, tx.latency_ns


def run_transaction(
    client: StormClient, body: TransactionBody, max_attempts: int = 100
) -> Timed[object]:
    """Run alone until it commits; latency adds up every attempt."""
    total = 0.0
    for _ in range(max_attempts):
        steps = attempt(client, body, None)
        committed, result, latency = _drain(steps)
        total += latency
        if committed:
            return Timed(result, total)
    raise RuntimeError(f"transaction did not commit in {max_attempts} attempts")


def run_interleaved(
    jobs: list[tuple[StormClient, TransactionBody]],
    seed: int,
    log: CommitLog | None = None,
    max_attempts: int = 1_000,
) -> list[int]:
    """Advance the jobs one remote operation at a time in a seeded random order; aborted
    attempts restart. Returns how many attempts each job needed."""
    rng = np.random.default_rng(seed)
    attempts = [1] * len(jobs)
    running = {index: attempt(client, body, log) for index, (client, body) in enumerate(jobs)}
    while running:
        index = list(running)[int(rng.integers(len(running)))]
        outcome = _advance(running[index])
        if outcome is None:
            continue
        if outcome[0]:
            del running[index]
            continue
        if attempts[index] >= max_attempts:
            raise RuntimeError(f"job {index} did not commit in {max_attempts} attempts")
        attempts[index] += 1
        client, body = jobs[index]
        running[index] = attempt(client, body, log)
    return attempts


def _advance(steps: Step) -> tuple[bool, object, float] | None:
    """Run one remote operation; the attempt's outcome once it has finished."""
    try:
        next(steps)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    return None


def _drain(steps: Step) -> tuple[bool, object, float]:
    while (outcome := _advance(steps)) is None:
        pass
    return outcome
