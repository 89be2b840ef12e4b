"""Clio: the memory node that holds KV pages (page table, TLB, slow/fast path, board API)."""
