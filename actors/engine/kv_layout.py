"""Reads and writes whole KV blocks of an engine's paged KV cache tensor, one per layer.

The KV connector moves blocks byte for byte, so it never depends on how an attention backend
arranges tokens inside a block (the CPU backend packs K and V rows for its kernels). Only
where the block index sits differs between cache layouts:

- CPU backend: `[blocks, kv_heads, block_size, 2 * head_dim]` (block index first).
- CUDA backends (FlashAttention and kin): `[2, blocks, block_size, kv_heads, head_dim]`.
"""

from __future__ import annotations

import torch


def _block_dim(cache: torch.Tensor) -> int:
    return 1 if cache.dim() == 5 and cache.shape[0] == 2 else 0


def block_numel(cache: torch.Tensor) -> int:
    """Elements of one block of one layer."""
    return cache.numel() // cache.shape[_block_dim(cache)]


def extract_blocks(cache: torch.Tensor, block_ids: list[int]) -> torch.Tensor:
    """The blocks as a `[len(block_ids), block_numel]` tensor (a copy)."""
    index = torch.tensor(block_ids, dtype=torch.long, device=cache.device)
    blocks = cache.index_select(_block_dim(cache), index)
    if _block_dim(cache) == 1:
        blocks = blocks.transpose(0, 1)
    return blocks.reshape(len(block_ids), -1).to("cpu")


def inject_blocks(cache: torch.Tensor, block_ids: list[int], data: torch.Tensor) -> None:
    """Writes a `[len(block_ids), block_numel]` tensor into the blocks."""
    data = data.to(device=cache.device, dtype=cache.dtype)
    for row, block in enumerate(block_ids):
        if _block_dim(cache) == 1:
            cache[:, block].copy_(data[row].view(cache[:, block].shape))
        else:
            cache[block].copy_(data[row].view(cache[block].shape))
