"""What a request tells the KV connector, and what the connector's workers are told to do.

The prefill instance asks its engine to *produce* the KV of a prompt's first `num_tokens`
tokens into memory-node pages; the decode instance asks its engine to *consume* them from
the page handles of the lease. These travel as vLLM `kv_transfer_params` (plain dicts), and
the connector's scheduler side turns them into per-step `SaveOp`s and `LoadOp`s for its
worker side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from cluster.kv_pages import PageHandle, PageKey

PARAMS_KEY = "tetriserve"


@dataclass(frozen=True, slots=True)
class TransferParams:
    role: Literal["produce", "consume"]
    tenant: int
    num_tokens: int
    model: str = ""
    adapter: str = ""
    pages: tuple[PageHandle, ...] = ()

    def to_kv_transfer_params(self) -> dict[str, Any]:
        body = {
            "role": self.role,
            "tenant": self.tenant,
            "num_tokens": self.num_tokens,
            "model": self.model,
            "adapter": self.adapter,
            "pages": [[p.memory_node, p.virtual_address, p.length] for p in self.pages],
        }
        return {PARAMS_KEY: body}

    @classmethod
    def from_kv_transfer_params(cls, params: dict[str, Any] | None) -> TransferParams | None:
        body = (params or {}).get(PARAMS_KEY)
        if body is None:
            return None
        tenant = int(body["tenant"])
        pages = tuple(
            PageHandle(None, str(node), tenant, int(va), int(length))
            for node, va, length in body["pages"]
        )
        return cls(
            role=body["role"],
            tenant=tenant,
            num_tokens=int(body["num_tokens"]),
            model=body.get("model", ""),
            adapter=body.get("adapter", ""),
            pages=pages,
        )


@dataclass(frozen=True, slots=True)
class PageSave:
    """Write block `block_id` (holding `valid_tokens` of the prompt) as page `key`."""

    block_id: int
    valid_tokens: int
    key: PageKey


@dataclass(frozen=True, slots=True)
class PageLoad:
    """Read page `handle` into block `block_id`; it must hold `needed_tokens` valid tokens."""

    page_index: int
    block_id: int
    needed_tokens: int
    handle: PageHandle


@dataclass(slots=True)
class SaveOp:
    req_id: str
    tenant: int
    pages: list[PageSave]


@dataclass(slots=True)
class LoadOp:
    req_id: str
    tenant: int
    pages: list[PageLoad]
