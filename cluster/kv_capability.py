"""Capabilities on the KV path: what lets a holder touch one tenant's pages, and for how long.

The global scheduler mints one when it places a request (the tenant of the request's model
and adapter) → the prefill and decode instances and their engines present it with every KV
call (gRPC metadata `CAPABILITY_METADATA`) → the SuperNIC switch checks it before it does
anything, and each memory node checks it again before it touches a page. A call without
one, with a forged or expired one, or with one for another tenant gets PERMISSION_DENIED.

A capability is `v1.<tenant>.<expiry, ms since the epoch>.<HMAC-SHA256 of what precedes>`,
under a secret that the deployment generates at start (or takes from `SECRET_ENV`) and
hands to the scheduler, the switch and the memory nodes: nothing is compiled in, and a
process that never got the secret cannot mint one. Tenants are named as text, so that the
KV service's numeric tenants and the switch's named ones are checked alike.

Pages reached one-sided (an engine on the memory node's machine, actors/kv/arena.py) are
guarded by the arena file's owner-only mode instead, as an RDMA region is by its
registration: no code of the memory node runs for such a read.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass

VERSION = "v1"
CAPABILITY_METADATA = "x-tetriserve-capability"
SECRET_ENV = "TETRISERVE_KV_SECRET"  # hex; when unset, each deployment makes its own
# Longer than any request lives: a capability outlasting its request grants only what the
# request already had.
CAPABILITY_TTL_S = 3600.0


class CapabilityError(PermissionError):
    """No capability, or one that is forged, expired or for another tenant."""


@dataclass(frozen=True, slots=True)
class Capability:
    tenant: str
    expires_at: float


def deployment_secret() -> bytes:
    """The secret from `SECRET_ENV` when set (hex), else 32 fresh random bytes."""
    configured = os.environ.get(SECRET_ENV, "")
    return bytes.fromhex(configured) if configured else secrets.token_bytes(32)


class CapabilityAuthority:
    """Mints and checks capabilities under one secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("a capability secret needs at least 16 bytes")
        self._secret = secret

    def mint(
        self, tenant: int | str, ttl_s: float = CAPABILITY_TTL_S, now: float | None = None
    ) -> str:
        expires_ms = round(((time.time() if now is None else now) + ttl_s) * 1000)
        body = f"{VERSION}.{tenant}.{expires_ms}"
        return f"{body}.{self._mac(body)}"

    def check(self, token: str, tenant: int | str, now: float | None = None) -> Capability:
        """The capability `token` grants, if it is genuine, unexpired and for `tenant`."""
        if not token:
            raise CapabilityError("no KV capability was presented")
        body, _, mac = token.rpartition(".")
        parts = body.split(".")
        if len(parts) != 3 or parts[0] != VERSION or not parts[2].isdigit():
            raise CapabilityError("malformed KV capability")
        if not hmac.compare_digest(mac, self._mac(body)):
            raise CapabilityError("KV capability with a bad signature")
        granted = Capability(tenant=parts[1], expires_at=int(parts[2]) / 1000)
        if granted.expires_at <= (time.time() if now is None else now):
            raise CapabilityError("expired KV capability")
        if granted.tenant != str(tenant):
            raise CapabilityError(f"KV capability for another tenant than {tenant}")
        return granted

    def check_any(self, tokens: list[str], tenant: int | str) -> Capability:
        """The first of `tokens` that grants `tenant` (a call may carry several)."""
        refusal = CapabilityError("no KV capability was presented")
        for token in tokens:
            try:
                return self.check(token, tenant)
            except CapabilityError as exc:
                refusal = exc
        raise refusal

    def _mac(self, body: str) -> str:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()
