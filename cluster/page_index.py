"""A memory node's metadata index: each tenant's content keys -> page addresses, and leases.

Request path: MemoryNode actor -> PageStore -> PageIndex. The page store keeps pages and
their bytes; the index answers "which page holds this key" and records each lease (tenant,
expiry, pages pinned). `find` resolves keys; `apply` makes one `IndexUpdate` atomically:
keys mapped to new pages, keys unmapped, keys that must still map to their pages (read
only), and one lease set or ended. A change that contradicts the index fails as a whole.
`KeyIndex` is the plain in-process index; a memory node injects one backed by a remote hash
table with transactions (fpga_models/storm/page_index.py). Every call returns its modelled
latency (ns).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cluster.kv_pages import PageKey
from cluster.page_errors import IndexConflictError


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    tenant: int
    expires_at: float
    pages: int


@dataclass(slots=True)
class IndexUpdate:
    tenant: int
    mapped: dict[PageKey, int] = field(default_factory=dict)  # key -> its new page
    unmapped: dict[PageKey, int] = field(default_factory=dict)  # key -> the page it leaves
    pinned: dict[PageKey, int] = field(default_factory=dict)  # key -> the page it must still map
    lease_id: str | None = None
    lease: LeaseRecord | None = None  # with a lease_id: None ends that lease

    def expected(self) -> dict[PageKey, int | None]:
        """What each key touched must map to before the update (None: nothing)."""
        return {**dict.fromkeys(self.mapped), **self.unmapped, **self.pinned}

    def after(self) -> dict[PageKey, int | None]:
        """What each written key maps to after the update (None: nothing)."""
        return {**dict.fromkeys(self.unmapped), **self.mapped}


class PageIndex(Protocol):
    def find(self, tenant: int, keys: Sequence[PageKey]) -> tuple[list[int | None], float]: ...
    def apply(self, update: IndexUpdate) -> float: ...
    def stats(self) -> dict[str, float]: ...


class KeyIndex:
    """The index in process memory: dictionaries, no modelled cost."""

    def __init__(self) -> None:
        self.pages: dict[tuple[int, PageKey], int] = {}
        self.leases: dict[str, LeaseRecord] = {}
        self.updates = 0

    def find(self, tenant: int, keys: Sequence[PageKey]) -> tuple[list[int | None], float]:
        return [self.pages.get((tenant, key)) for key in keys], 0.0

    def apply(self, update: IndexUpdate) -> float:
        for key, expected in update.expected().items():
            if self.pages.get((update.tenant, key)) != expected:
                raise IndexConflictError(f"key {key} does not map to {expected}")
        for key, address in update.after().items():
            if address is None:
                del self.pages[update.tenant, key]
            else:
                self.pages[update.tenant, key] = address
        if update.lease_id is not None:
            if update.lease is None:
                self.leases.pop(update.lease_id, None)
            else:
                self.leases[update.lease_id] = update.lease
        self.updates += 1
        return 0.0

    def stats(self) -> dict[str, float]:
        return {"keys": len(self.pages), "leases": len(self.leases), "updates": self.updates}
