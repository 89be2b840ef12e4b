"""An engine's KV data plane: page bytes between its cache blocks and memory nodes.

Called by the KV connector's worker side (actors/engine/kv_connector.py), in the engine's
worker process. A page (named by the handle of its lease, `KVClient.alloc_pages`) is reached
one of two ways:

- one-sided, when its memory node's shared arena is on this machine and on the engine's
  Ray node (actors/kv/arena.py):
  each layer's blocks are copied straight into their places in the arena as the forward
  pass makes them, the trailers last; a read checks the trailers, then copies each layer's
  blocks back. No code of the memory node or the switch runs for it. The bytes moved are
  reported to the switch afterwards, in batches, and it prices and accounts them as if they
  had crossed it.
- through the switch, from another node: the pages are staged in host memory and sent
  whole, all of a step's in one call; a read comes back the same way.

Pages that follow one another in one buffer (a lease's pages usually do: the memory node
cuts them one after the other out of a region) form a run, and a layer's blocks of a run
move in one tensor copy: no Python loop per page or per byte.

The trailer (cluster/kv_pages.py) carries the nonce of the page's lease: a reader only takes
a page sealed under its own lease, so a slot freed and reused never passes for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from actors.engine.kv_layout import copy_in, copy_out
from actors.kv.arena import SharedArena
from actors.kv.kv_client import KVClient, KVTransferError
from cluster.kv_pages import TRAILER_BYTES, PageHandle, PageNotSealed, trailer, valid_tokens
from tetriserve.v1 import switch_pb2

REPORT_EVERY_S = 0.2
log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Moved:
    to_memory: int = 0
    from_memory: int = 0
    transfers: int = 0


@dataclass(slots=True)
class _Run:
    """Pages that lie one after another in `buffer`, from byte `start`, and the block each
    one goes with."""

    buffer: torch.Tensor
    start: int
    blocks: list[int]


class Placed:
    """Where a step's pages sit: in arenas on this machine, or in one staging buffer.
    `failure`: why the pages after `places` could not be read (None: all were)."""

    def __init__(
        self, places: list[tuple[torch.Tensor, int]], page_bytes: int, failure: str | None = None
    ) -> None:
        self.places = places  # per page: its buffer, and its first byte there
        self.page_bytes = page_bytes
        self.failure = failure

    def runs(self, blocks: Sequence[int]) -> Iterator[_Run]:
        """The runs of the pages placed, with their blocks (one per page, in order)."""
        run: _Run | None = None
        for (buffer, start), block in zip(self.places, blocks, strict=False):
            follows = (
                run is not None
                and run.buffer is buffer
                and start == run.start + len(run.blocks) * self.page_bytes
            )
            if follows:
                run.blocks.append(block)
                continue
            if run is not None:
                yield run
            run = _Run(buffer, start, [block])
        if run is not None:
            yield run

    def rows(self, run: _Run, offset: int, width: int) -> torch.Tensor:
        """`[pages, width]` bytes at `offset` of each page of the run."""
        first = run.buffer.storage_offset() + run.start + offset
        return run.buffer.as_strided((len(run.blocks), width), (self.page_bytes, 1), first)

    def page(self, index: int) -> torch.Tensor:
        buffer, start = self.places[index]
        return buffer[start : start + self.page_bytes]


class PageIO:
    def __init__(
        self, client: KVClient, block_bytes: int, layers: int, node: str | None = None
    ) -> None:
        """`node`: the tag of the Ray node the engine runs on; only the arenas of memory
        nodes on it are used (None: any arena on this machine)."""
        self.client = client
        self.node = node
        self.block_bytes = block_bytes
        self.layers = layers
        self.page_bytes = layers * block_bytes + TRAILER_BYTES
        self._arenas: dict[str, tuple[SharedArena, torch.Tensor] | None] = {}
        self._placed: dict[tuple[PageHandle, ...], Placed] = {}  # pages being written
        self._moved: dict[str, _Moved] = {}
        self._lock = threading.Lock()
        self._reporter = ThreadPoolExecutor(1, thread_name_prefix="kv-report")
        self._report_due = False

    def _arena(self, handle: PageHandle) -> torch.Tensor | None:
        """The page's memory node's arena, when that is on this machine."""
        if handle.arena not in self._arenas:
            arena = SharedArena.attach(handle.arena, self.node) if handle.arena else None
            self._arenas[handle.arena] = (
                (arena, torch.frombuffer(arena.buffer, dtype=torch.uint8)) if arena else None
            )
        mapped = self._arenas[handle.arena]
        return None if mapped is None else mapped[1]

    def _place(self, pages: Sequence[PageHandle]) -> Placed:
        """Each page's place while it is written: its arena, or (for the pages of another
        machine) a staging buffer, kept until the pages are sealed."""
        key = tuple(pages)
        placed = self._placed.get(key)
        if placed is not None:
            return placed
        places: list[tuple[torch.Tensor, int]] = []
        remote = [h for h in pages if self._arena(h) is None]
        buffer = torch.empty(len(remote) * self.page_bytes, dtype=torch.uint8) if remote else None
        staging = 0
        for handle in pages:
            arena = self._arena(handle)
            if arena is not None:
                places.append((arena, handle.arena_offset))
            else:
                assert buffer is not None
                places.append((buffer, staging))
                staging += self.page_bytes
        placed = self._placed[key] = Placed(places, self.page_bytes)
        return placed

    # --- writing ------------------------------------------------------------------------------
    def write_layer(
        self, pages: Sequence[PageHandle], layer: int, cache: torch.Tensor, blocks: Sequence[int]
    ) -> None:
        """One layer's blocks of a step's pages, as soon as the forward pass made them."""
        placed = self._place(pages)
        for run in placed.runs(blocks):
            rows = placed.rows(run, layer * self.block_bytes, self.block_bytes)
            copy_out(cache, run.blocks, rows)

    def seal(self, tenant: int, pages: Sequence[tuple[PageHandle, int]], nonce: int) -> None:
        """Writes each page's trailer (`valid` tokens, `nonce`), last; pages staged for
        another machine go in one call. Raises KVTransferError when they cannot."""
        handles = [handle for handle, _ in pages]
        placed = self._place(handles)
        del self._placed[tuple(handles)]
        remote = []
        for index, (handle, valid) in enumerate(pages):
            page = placed.page(index)
            page[-TRAILER_BYTES:] = torch.frombuffer(
                bytearray(trailer(valid, nonce)), dtype=torch.uint8
            )
            if self._arena(handle) is None:
                remote.append((handle, page.numpy().tobytes()))
        one_sided = len(pages) - len(remote)
        if one_sided:
            self._count(tenant, to_memory=one_sided * self.page_bytes)
        if remote:
            self.client.put_pages(tenant, remote)

    # --- reading ------------------------------------------------------------------------------
    def read(self, tenant: int, pages: Sequence[tuple[PageHandle, int]], nonce: int) -> Placed:
        """The pages, each checked whole under the lease with at least its `needed` tokens,
        up to the first that is not (its reason in `failure`)."""
        remote = [handle for handle, _ in pages if self._arena(handle) is None]
        fetched: dict[PageHandle, torch.Tensor] = {}
        if remote:
            try:
                data = self.client.read_pages(tenant, remote)
            except KVTransferError as exc:
                return Placed([], self.page_bytes, str(exc))
            fetched = {
                handle: torch.frombuffer(bytearray(page), dtype=torch.uint8)
                for handle, page in zip(remote, data, strict=True)
            }
        places: list[tuple[torch.Tensor, int]] = []
        failure, one_sided = None, 0
        for handle, needed in pages:
            arena = self._arena(handle)
            place = (arena, handle.arena_offset) if arena is not None else (fetched[handle], 0)
            failure = self._check(*place, needed, nonce)
            if failure is not None:
                break
            places.append(place)
            one_sided += arena is not None
        if one_sided:
            self._count(tenant, from_memory=one_sided * self.page_bytes)
        return Placed(places, self.page_bytes, failure)

    def _check(self, buffer: torch.Tensor, start: int, needed: int, nonce: int) -> str | None:
        """Why the page at `start` cannot be used, or None."""
        end = start + self.page_bytes
        if len(buffer) < end:
            return f"a page shorter than {self.page_bytes} bytes"
        try:
            valid = valid_tokens(buffer[end - TRAILER_BYTES : end].numpy().tobytes(), nonce)
        except PageNotSealed as exc:
            return str(exc)
        return None if valid >= needed else f"the page holds {valid} tokens, {needed} needed"

    def read_layer(
        self, placed: Placed, layer: int, cache: torch.Tensor, blocks: Sequence[int]
    ) -> None:
        """One layer's blocks of pages `read` returned, into the cache."""
        for run in placed.runs(blocks):
            copy_in(cache, run.blocks, placed.rows(run, layer * self.block_bytes, self.block_bytes))

    # --- accounting ---------------------------------------------------------------------------
    def _count(self, tenant: int, to_memory: int = 0, from_memory: int = 0) -> None:
        """Counts bytes moved one-sided; the first count after a report sends the next one
        `REPORT_EVERY_S` later, with every count made meanwhile."""
        with self._lock:
            moved = self._moved.setdefault(str(tenant), _Moved())
            moved.to_memory += to_memory
            moved.from_memory += from_memory
            moved.transfers += 1
            first, self._report_due = not self._report_due, True
        if first:
            self._reporter.submit(self._report_soon)

    def _report_soon(self) -> None:
        time.sleep(REPORT_EVERY_S)
        with self._lock:
            self._report_due = False
        self.report()

    def report(self) -> None:
        """Sends the bytes moved one-sided since the last report to the switch."""
        with self._lock:
            moved, self._moved = self._moved, {}
        if not moved:
            return
        report = [
            switch_pb2.MovedBytes(
                tenant=tenant,
                to_memory=m.to_memory,
                from_memory=m.from_memory,
                transfers=m.transfers,
            )
            for tenant, m in moved.items()
        ]
        try:
            self.client.account(report)
        except KVTransferError as exc:
            log.warning("the switch did not take the KV bytes moved one-sided: %s", exc)

    def close(self) -> None:
        """Reports what is left; the arenas stay mapped until the process ends."""
        self._reporter.submit(self.report)
        self._reporter.shutdown(wait=True)
        self.client.close()
