"""Copies KV blocks of an engine's paged cache to or from the rows of a page buffer.

The KV connector moves blocks byte for byte, so it never depends on how an attention backend
arranges tokens inside a block (the CPU backend packs K and V rows for its kernels). Only
where the block index sits differs between cache layouts:

- CPU backend: `[blocks, kv_heads, block_size, 2 * head_dim]` (block index first): a block
  is one contiguous run of bytes, and a layer's cache is a matrix of block rows.
- CUDA backends (FlashAttention and kin): `[2, blocks, block_size, kv_heads, head_dim]`: a
  block is two runs, K then V.

`rows` is a uint8 `[n, block_bytes]` tensor: one row per page, each row where that page
keeps this layer's block (a strided view into a memory node's shared arena, or a staging
buffer). Block-first caches move with one tensor copy for all the rows; the others one
block at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _block(cache: torch.Tensor, block_id: int) -> torch.Tensor:
    return cache[:, block_id] if cache.dim() == 5 and cache.shape[0] == 2 else cache[block_id]


def block_bytes(cache: torch.Tensor) -> int:
    """Bytes of one block of one layer."""
    return _block(cache, 0).numel() * cache.element_size()


def _block_rows(cache: torch.Tensor) -> torch.Tensor | None:
    """The cache as a `[blocks, block_bytes]` uint8 matrix, when blocks are its rows."""
    if (cache.dim() == 5 and cache.shape[0] == 2) or not cache.is_contiguous():
        return None
    return cache.view(cache.shape[0], -1).view(torch.uint8)


def _consecutive(blocks: Sequence[int]) -> bool:
    return all(b == blocks[0] + i for i, b in enumerate(blocks))


def copy_out(cache: torch.Tensor, blocks: Sequence[int], rows: torch.Tensor) -> None:
    """The blocks' bytes into the rows, in order."""
    matrix = _block_rows(cache)
    if matrix is None:
        for row, block_id in enumerate(blocks):
            block = _block(cache, block_id)
            rows[row].view(cache.dtype).view(block.shape).copy_(block)
    elif _consecutive(blocks):
        rows.copy_(matrix[blocks[0] : blocks[0] + len(blocks)])
    else:
        rows.copy_(matrix[torch.tensor(blocks, dtype=torch.long, device=cache.device)])


def copy_in(cache: torch.Tensor, blocks: Sequence[int], rows: torch.Tensor) -> None:
    """The rows' bytes into the blocks, in order."""
    matrix = _block_rows(cache)
    if matrix is None:
        for row, block_id in enumerate(blocks):
            block = _block(cache, block_id)
            block.copy_(rows[row].view(cache.dtype).view(block.shape))
    elif _consecutive(blocks):
        matrix[blocks[0] : blocks[0] + len(blocks)].copy_(rows)
    else:
        index = torch.tensor(blocks, dtype=torch.long, device=cache.device)
        matrix.index_copy_(0, index, rows.to(cache.device))
