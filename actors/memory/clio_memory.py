"""The Clio memory board model as the `Memory` under a memory node's page store.

Request path: MemoryNode actor -> PageStore -> ClioMemory -> ClioBoard. A tenant is a Clio
process id; a store arena is one `ralloc` region; every call answers with the board's
modelled latency. Board errors become page-store errors, so callers see one error family.
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

    def alloc_region(self, tenant: int, nbytes: int) -> tuple[int, float]:
        return self._call(self.board.ralloc, tenant, nbytes)

    def free_region(self, tenant: int, address: int) -> float:
        return self._call(self.board.rfree, tenant, address)

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
