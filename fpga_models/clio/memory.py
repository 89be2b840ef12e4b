"""The memory node's DRAM: real bytes, held sparsely or in a buffer the node maps.

Physical pages are megabytes, so the sparse store (`PhysicalMemory`) keeps only the blocks
that were written, per frame; a block never written reads as zeros. `MappedMemory` lays frame
n at the n-th page of a buffer (a memory node's shared memory, which engines on its machine
map too, for one-sided access): a read or write is one copy. Scrubbing a frame (on rfree)
leaves zeros in it, so the next owner of the frame never reads the previous owner's data.
"""

from __future__ import annotations

_BLOCK_BYTES = 4096


class PhysicalMemory:
    """Frame number + offset -> bytes, allocated block by block on first write."""

    def __init__(self, page_size: int) -> None:
        self.page_size = page_size
        self._frames: dict[int, dict[int, bytearray]] = {}

    def read(self, ppn: int, offset: int, nbytes: int) -> bytes:
        _check(self.page_size, offset, nbytes)
        blocks = self._frames.get(ppn, {})
        out = bytearray(nbytes)
        for block, start, stop, at in self._spans(offset, nbytes):
            stored = blocks.get(block)
            if stored is not None:
                out[at : at + stop - start] = stored[start:stop]
        return bytes(out)

    def write(self, ppn: int, offset: int, data: bytes | bytearray | memoryview) -> None:
        _check(self.page_size, offset, len(data))
        blocks = self._frames.setdefault(ppn, {})
        view = memoryview(data)
        for block, start, stop, at in self._spans(offset, len(data)):
            stored = blocks.get(block)
            if stored is None:
                stored = blocks[block] = bytearray(_BLOCK_BYTES)
            stored[start:stop] = view[at : at + stop - start]

    def scrub(self, ppn: int) -> None:
        self._frames.pop(ppn, None)

    def resident_bytes(self) -> int:
        return sum(len(blocks) for blocks in self._frames.values()) * _BLOCK_BYTES

    @staticmethod
    def _spans(offset: int, nbytes: int):
        """(block, start in block, stop in block, position in the caller's buffer)."""
        at = 0
        while at < nbytes:
            block, start = divmod(offset + at, _BLOCK_BYTES)
            stop = min(_BLOCK_BYTES, start + nbytes - at)
            yield block, start, stop, at
            at += stop - start


class MappedMemory:
    """Frame n at bytes [n * page_size, (n + 1) * page_size) of a writable buffer."""

    def __init__(self, page_size: int, buffer: memoryview) -> None:
        self.page_size = page_size
        self.buffer = buffer
        self.frames = len(buffer) // page_size
        self._touched: set[int] = set()

    def offset(self, ppn: int, offset: int = 0) -> int:
        """Where a frame's byte sits in the buffer."""
        if not 0 <= ppn < self.frames:
            raise ValueError(f"frame {ppn} is outside the {self.frames} frames of the buffer")
        return ppn * self.page_size + offset

    def read(self, ppn: int, offset: int, nbytes: int) -> bytes:
        _check(self.page_size, offset, nbytes)
        start = self.offset(ppn, offset)
        return bytes(self.buffer[start : start + nbytes])

    def write(self, ppn: int, offset: int, data: bytes | bytearray | memoryview) -> None:
        _check(self.page_size, offset, len(data))
        start = self.offset(ppn, offset)
        self.buffer[start : start + len(data)] = data
        self._touched.add(ppn)

    def scrub(self, ppn: int) -> None:
        start = self.offset(ppn)
        self.buffer[start : start + self.page_size] = bytes(self.page_size)
        self._touched.discard(ppn)

    def resident_bytes(self) -> int:
        """Frames written through the board so far (one-sided writes are not seen here)."""
        return len(self._touched) * self.page_size


def _check(page_size: int, offset: int, nbytes: int) -> None:
    if offset < 0 or nbytes < 0 or offset + nbytes > page_size:
        raise ValueError(f"{nbytes} bytes at offset {offset} leave the frame")
