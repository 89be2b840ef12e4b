"""KV cache pages: how a prompt's KV cache is cut into pages, named and laid out.

A prefill instance writes the KV of prompt tokens [0, n) into pages of `block_size` tokens;
a decode instance reads the same pages back. Both sides derive the page keys from the token
ids alone, so a page's name says exactly what it holds: the model, the adapter (two adapters
never share KV) and a hash chained over every token up to the end of the page. A tenant is
one (model, adapter) pair and owns one address space on each memory node.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

_HASH_BYTES = 16


def tenant_id(model: str, adapter: str | None) -> int:
    """A stable 63-bit tenant id for a (model, adapter) pair."""
    digest = hashlib.blake2b(f"{model}\0{adapter or ''}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass(frozen=True, slots=True)
class PageKey:
    model: str
    adapter: str
    prefix_hash: bytes
    block_index: int


def page_keys(
    model: str, adapter: str | None, token_ids: Sequence[int], block_size: int
) -> list[PageKey]:
    """Keys of the pages holding tokens [0, len(token_ids)); the last page may be partial."""
    chained = hashlib.blake2b(f"{model}\0{adapter or ''}".encode(), digest_size=_HASH_BYTES)
    keys = []
    for index, start in enumerate(range(0, len(token_ids), block_size)):
        block = token_ids[start : start + block_size]
        chained.update(struct.pack(f"<{len(block)}I", *block))
        keys.append(PageKey(model, adapter or "", chained.copy().digest(), index))
    return keys


PAGE_MAGIC = 0x54534B56  # "TSKV"
# magic, tokens of the page that hold valid KV, the nonce of the lease it was written under
_TRAILER = struct.Struct("<IIQ")


@dataclass(frozen=True, slots=True)
class PageLayout:
    """One page = one KV block of every layer, byte for byte, layer after layer, then a
    16-byte trailer. The writer writes the trailer last: it says how many of the block's
    tokens hold valid KV and carries the nonce of the lease the page was allocated under,
    so a reader knows the page is complete and is the one its lease names (a slot freed and
    reused under another lease carries another nonce).

    Page bytes = layers x block_size x (K, V) x kv_heads x head_dim x dtype_bytes + 16.
    """

    num_layers: int
    num_kv_heads: int
    head_dim: int
    block_size: int
    dtype_bytes: int = 4

    @property
    def block_bytes(self) -> int:
        """Bytes of one block of one layer."""
        return self.block_size * 2 * self.num_kv_heads * self.head_dim * self.dtype_bytes

    @property
    def page_bytes(self) -> int:
        return self.num_layers * self.block_bytes + TRAILER_BYTES

    def num_pages(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def tokens_in_page(self, page_index: int, num_tokens: int) -> int:
        return max(0, min(self.block_size, num_tokens - page_index * self.block_size))


TRAILER_BYTES = _TRAILER.size


class PageNotSealed(ValueError):
    """The bytes are not a page sealed under the expected lease."""


def pages_touched(block_size: int, start: int, end: int) -> range:
    """Indices of the pages (blocks) that hold any of the tokens [start, end)."""
    return range(start // block_size, -(-end // block_size)) if end > start else range(0)


def trailer(valid_tokens: int, nonce: int) -> bytes:
    return _TRAILER.pack(PAGE_MAGIC, valid_tokens, nonce)


def seal_page(blocks: bytes, valid_tokens: int, nonce: int) -> bytes:
    return blocks + trailer(valid_tokens, nonce)


def valid_tokens(trailer_bytes: bytes | memoryview, nonce: int) -> int:
    """The valid tokens a page's trailer records; PageNotSealed unless it is sealed under
    `nonce`."""
    magic, valid, sealed_under = _TRAILER.unpack_from(trailer_bytes, 0)
    if magic != PAGE_MAGIC or sealed_under != nonce:
        raise PageNotSealed("the page is not sealed under this lease")
    return valid


def open_page(page: bytes, nonce: int) -> tuple[bytes, int]:
    """The block bytes of a whole page and its valid token count."""
    body = len(page) - TRAILER_BYTES
    return page[:body], valid_tokens(memoryview(page)[body:], nonce)


@dataclass(frozen=True, slots=True)
class PageHandle:
    """Where one page lives: a memory node, the tenant's address space there, an address.

    `arena` and `arena_offset` say where the page's bytes sit in the memory node's shared
    memory, for one-sided access by engines on its machine (empty: through the switch only).
    `checksum` is the CRC-32 of the page as last written whole through the switch (0 when
    not known).
    """

    key: PageKey | None
    memory_node: str
    tenant: int
    virtual_address: int
    length: int
    checksum: int = 0
    arena: str = ""
    arena_offset: int = 0
