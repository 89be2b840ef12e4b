"""What a request tells the KV connector, and what the connector's workers are told to do.

The prefill instance asks its engine to *produce* the KV of a prompt's first `num_tokens`
tokens into the pages of its lease; the decode instance asks its engine to *consume* them
from the same pages. Both travel as vLLM `kv_transfer_params` (plain dicts) with the lease's
page handles and nonce, and the connector's scheduler side turns them into per-step
`SaveOp`s and `LoadOp`s for its worker side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from cluster.kv_pages import PageHandle

PARAMS_KEY = "tetriserve"
# A lease's pages are written or read only while this much of the lease is left: once it
# expires, its memory node may give the pages to another request, and nothing would stop a
# late writer or reader. Without it, the decode recomputes.
LEASE_MARGIN_S = 5.0


def lease_usable(expires_at_unix_s: float, now_unix_s: float) -> bool:
    return expires_at_unix_s - now_unix_s >= LEASE_MARGIN_S


def lease_worth_keeping(expires_at_unix_s: float, now_unix_s: float, ttl_s: float) -> bool:
    """Whether a lease taken when its request arrived still has half its life left when
    the prefill starts: enough for the prefill and the decode's admission. Otherwise the
    prefill takes a fresh one, so that a long wait in the prefill queue never costs the
    decode a recompute of the whole prompt; unless leases of `ttl_s` are never usable
    (`lease_usable`), when a fresh one would be one more call for nothing."""
    if ttl_s < LEASE_MARGIN_S:
        return True
    return expires_at_unix_s - now_unix_s >= max(LEASE_MARGIN_S, ttl_s / 2)


@dataclass(frozen=True, slots=True)
class TransferParams:
    role: Literal["produce", "consume"]
    tenant: int
    num_tokens: int
    pages: tuple[PageHandle, ...] = ()
    nonce: int = 0
    # The request's KV capability (cluster/kv_capability.py), presented with every KV call.
    capability: str = ""

    def to_kv_transfer_params(self) -> dict[str, Any]:
        body = {
            "role": self.role,
            "tenant": self.tenant,
            "num_tokens": self.num_tokens,
            "nonce": self.nonce,
            "capability": self.capability,
            "pages": [
                [p.memory_node, p.virtual_address, p.length, p.arena, p.arena_offset]
                for p in self.pages
            ],
        }
        return {PARAMS_KEY: body}

    @classmethod
    def from_kv_transfer_params(cls, params: dict[str, Any] | None) -> TransferParams | None:
        body = (params or {}).get(PARAMS_KEY)
        if body is None:
            return None
        tenant = int(body["tenant"])
        pages = tuple(
            PageHandle(None, str(node), tenant, int(va), int(length), 0, str(arena), int(offset))
            for node, va, length, arena, offset in body["pages"]
        )
        return cls(
            role=body["role"],
            tenant=tenant,
            num_tokens=int(body["num_tokens"]),
            pages=pages,
            nonce=int(body["nonce"]),
            capability=str(body.get("capability", "")),
        )

    def loadable(self, block_size: int, prompt_tokens: int) -> int:
        """Prompt tokens the pages supply; the engine computes at least the last one."""
        return min(self.num_tokens, len(self.pages) * block_size, prompt_tokens - 1)


@dataclass(frozen=True, slots=True)
class PageSave:
    """Write block `block_id` (holding `valid_tokens` of the prompt) into page `handle`."""

    block_id: int
    valid_tokens: int
    handle: PageHandle


@dataclass(frozen=True, slots=True)
class PageLoad:
    """Read page `handle` into block `block_id`; it must hold `needed_tokens` valid tokens."""

    block_id: int
    needed_tokens: int
    handle: PageHandle


@dataclass(slots=True)
class SaveOp:
    req_id: str
    tenant: int
    nonce: int
    pages: list[PageSave]
    capability: str = ""


@dataclass(slots=True)
class LoadOp:
    req_id: str
    tenant: int
    nonce: int
    pages: list[PageLoad]
    capability: str = ""
