"""The shared memory a memory node keeps its pages in, mapped by engines on its machine.

Request path: a memory node creates its arena (its board's DRAM, fpga_models/clio/memory.py)
→ page handles name the arena and where a page's bytes sit in it → an engine on the same
machine attaches the arena by name and copies KV blocks straight into and out of it: one
copy per byte, no owner-side CPU, like an RDMA write or read. An engine on another machine
finds no arena of that name and goes through the switch instead (actors/kv/page_io.py).

The arena is a sparse file under /dev/shm (the temporary directory where there is none), so
only pages written use memory. Its first page is a header that holds the arena's id, which
an engine checks after attaching: a file of the same name on another machine is not this
arena. A memory node's arena goes with the memory node (`close(unlink=True)`); arenas whose
memory node died without closing are swept when the next one is made. Only the user that
runs the memory node may open the file (mode 0600): that is the one-sided path's access
check, as an RDMA region's registration is.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import tempfile
import uuid
from pathlib import Path

from actors.node_address import LOCAL_TAG

HEADER_BYTES = 4096
_HEADER = struct.Struct("<8s16s")  # magic, arena id
_MAGIC = b"TSARENA1"
_PREFIX = "tetriserve-arena"


def arena_dir() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() else Path(tempfile.gettempdir())


class SharedArena:
    """`buffer`: the arena's bytes after its header, as a writable memoryview."""

    def __init__(self, path: Path, mapping: mmap.mmap, owner: bool) -> None:
        self.path = path
        self.name = path.name
        self._mapping = mapping
        self._owner = owner
        self.buffer = memoryview(mapping)[HEADER_BYTES:]

    @classmethod
    def create(cls, size: int, node: str = LOCAL_TAG) -> SharedArena:
        """A new arena of `size` bytes, named after its maker and the node it is on."""
        _sweep()
        arena_id = uuid.uuid4()
        path = arena_dir() / f"{_PREFIX}-{os.getpid()}-{node}-{arena_id.hex}"
        # Owner-only: the one-sided path checks no capability, so no other user may map it.
        with os.fdopen(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600), "wb") as file:
            file.truncate(HEADER_BYTES + size)
            file.write(_HEADER.pack(_MAGIC, arena_id.bytes))
        return cls(path, _map(path), owner=True)

    @classmethod
    def attach(cls, name: str, node: str | None = None) -> SharedArena | None:
        """The arena called `name` if it lives on this machine, and on node `node` when one
        is given (Ray nodes that share a machine share nothing here), else None."""
        path = arena_dir() / name
        if not name.startswith(_PREFIX) or not path.exists():
            return None
        if node is not None and arena_node(name) != node:
            return None
        with contextlib.suppress(OSError, ValueError):
            mapping = _map(path)
            magic, arena_id = _HEADER.unpack_from(mapping, 0)
            if magic == _MAGIC and arena_id.hex() == name.rsplit("-", 1)[1]:
                return cls(path, mapping, owner=False)
            mapping.close()
        return None

    def close(self) -> None:
        """Unmaps the arena; its maker also removes it."""
        self.buffer.release()
        with contextlib.suppress(BufferError):
            self._mapping.close()
        if self._owner:
            self.path.unlink(missing_ok=True)


def arena_node(name: str) -> str:
    """The tag of the node an arena was made on."""
    return name.removeprefix(f"{_PREFIX}-").split("-")[1]


def _map(path: Path) -> mmap.mmap:
    with path.open("r+b") as file:
        return mmap.mmap(file.fileno(), 0)


def _sweep() -> None:
    """Removes the arenas of memory nodes that are gone."""
    for path in arena_dir().glob(f"{_PREFIX}-*"):
        with contextlib.suppress(ValueError, OSError):
            pid = int(path.name.split("-")[2])
            if not _alive(pid):
                path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
