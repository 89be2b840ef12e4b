"""The Clio memory board model as the `Memory` under a memory node's page store.

Request path: MemoryNode actor -> PageStore -> ClioMemory -> ClioBoard. A tenant is a Clio
process id; a store arena is one `ralloc` region, mapped for one-sided access (`rmap`) as
soon as it is made, so that `locate` can tell where any of its bytes sits in the board's
memory: the shared arena engines on this machine copy KV pages into and out of. Every call
answers with the board's modelled latency. Board errors become page-store errors, so
callers see one error family.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from cluster.page_store import OutOfMemoryError, StorageError
from fpga_models.clio.board import ClioBoard
from fpga_models.clio.errors import ClioError, OutOfMemory

T = TypeVar("T")


class ClioMemory:
    def __init__(self, board: ClioBoard | None = None) -> None:
        self.board = board or ClioBoard()
        self.page_size = self.board.params.page_size
        self._frames: dict[tuple[int, int], int] = {}  # (tenant, virtual page) -> frame
        self._regions: dict[tuple[int, int], int] = {}  # (tenant, address) -> its pages

    def alloc_region(self, tenant: int, nbytes: int) -> tuple[int, float]:
        address, alloc_ns = self._call(self.board.ralloc, tenant, nbytes)
        frames, map_ns = self._call(self.board.rmap, tenant, address, nbytes)
        first = address // self.page_size
        self._frames.update({(tenant, first + i): frame for i, frame in enumerate(frames)})
        self._regions[tenant, address] = len(frames)
        return address, alloc_ns + map_ns

    def free_region(self, tenant: int, address: int) -> float:
        latency = self._call(self.board.rfree, tenant, address)
        first = address // self.page_size
        for page in range(first, first + self._regions.pop((tenant, address), 0)):
            del self._frames[tenant, page]
        return latency

    def locate(self, tenant: int, address: int) -> int:
        """Where the byte at `address` sits in the board's memory (a mapped region's)."""
        page, offset = divmod(address, self.page_size)
        return self._frames[tenant, page] * self.page_size + offset

    def write(self, tenant: int, address: int, data: bytes) -> float:
        return self._call(self.board.rwrite, tenant, address, data)

    def read(self, tenant: int, address: int, nbytes: int) -> tuple[bytes, float]:
        return self._call(self.board.rread, tenant, address, nbytes)

    def lock(self, tenant: int, address: int) -> tuple[bool, float]:
        return self._call(self.board.rlock, tenant, address)

    def unlock(self, tenant: int, address: int) -> float:
        return self._call(self.board.runlock, tenant, address)

    def fence(self, tenant: int) -> float:
        return self._call(self.board.rfence, tenant)

    def resident_bytes(self) -> int:
        return self.board.memory.resident_bytes()

    @staticmethod
    def _call(operation: Callable[..., T], *args: object) -> T:
        try:
            return operation(*args)
        except OutOfMemory as error:
            raise OutOfMemoryError(str(error)) from error
        except ClioError as error:
            raise StorageError(f"{type(error).__name__}: {error}") from error
