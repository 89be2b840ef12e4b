"""The memory node's DRAM: real bytes, held sparsely.

Physical pages are megabytes, so the store keeps only the blocks that were written, per
frame; a block never written reads as zeros. Scrubbing a frame (on rfree) drops its blocks,
so the next owner of the frame reads zeros and never the previous owner's data.
"""

from __future__ import annotations

_BLOCK_BYTES = 4096


class PhysicalMemory:
    """Frame number + offset -> bytes, allocated block by block on first write."""

    def __init__(self, page_size: int) -> None:
        self.page_size = page_size
        self._frames: dict[int, dict[int, bytearray]] = {}

    def read(self, ppn: int, offset: int, nbytes: int) -> bytes:
        self._check(offset, nbytes)
        blocks = self._frames.get(ppn, {})
        out = bytearray(nbytes)
        for block, start, stop, at in self._spans(offset, nbytes):
            stored = blocks.get(block)
            if stored is not None:
                out[at : at + stop - start] = stored[start:stop]
        return bytes(out)

    def write(self, ppn: int, offset: int, data: bytes | bytearray | memoryview) -> None:
        self._check(offset, len(data))
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

    def _check(self, offset: int, nbytes: int) -> None:
        if offset < 0 or nbytes < 0 or offset + nbytes > self.page_size:
            raise ValueError(f"{nbytes} bytes at offset {offset} leave the frame")

    @staticmethod
    def _spans(offset: int, nbytes: int):
        """(block, start in block, stop in block, position in the caller's buffer)."""
        at = 0
        while at < nbytes:
            block, start = divmod(offset + at, _BLOCK_BYTES)
            stop = min(_BLOCK_BYTES, start + nbytes - at)
            yield block, start, stop, at
            at += stop - start
