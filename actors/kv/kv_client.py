"""KVClient: how an engine moves KV pages to and from memory nodes, through a SuperNIC switch.

Request path: engine (vLLM worker process, no Ray) -> KVClient -> gRPC -> SuperNICSwitch ->
MemoryNode. Synchronous, plain gRPC: every call carries a deadline and either returns or
raises `KVTransferError` (dead switch or memory node, refused access, timeout); none hangs.
Every call presents the KV capability the client holds for each tenant it touches
(cluster/kv_capability.py); without one the switch answers PERMISSION_DENIED.

    client = KVClient("127.0.0.1:50051")
    client.present(tenant, capability)   # minted by the global scheduler
    handle = client.alloc(tenant, key, len(page))
    client.write_page(handle, page)
    page = client.read(handle.tenant, handle.memory_node, handle.virtual_address, handle.length)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import grpc
from google.protobuf.message import Message

from actors.kv.fault_injection import with_faults
from actors.wire import handle_from_wire, handle_to_wire, key_to_wire
from cluster.kv_capability import CAPABILITY_METADATA
from cluster.kv_pages import PageHandle, PageKey
from tetriserve.v1 import kv_pb2, kv_pb2_grpc, switch_pb2, switch_pb2_grpc

R = TypeVar("R")
MAX_MESSAGE_BYTES = 64 << 20
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
# A lease release is idempotent, so one lost on the way is sent again: a lease left behind
# would pin its pages until it expires.
RELEASE_ATTEMPTS = 3
RELEASE_BACKOFF_S = 0.05
TRANSIENT_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})


class Placed(Protocol):
    """Anything that says where a page is, such as a PageHandle."""

    @property
    def memory_node(self) -> str: ...
    @property
    def virtual_address(self) -> int: ...


def tenants_touched(request: Message) -> list[str]:
    """The tenants whose pages or accounts a KV or switch request touches: one, or each in
    a report of bytes moved."""
    if isinstance(request, switch_pb2.MovedReport):
        return sorted({moved.tenant for moved in request.moved})
    if isinstance(request, switch_pb2.SwitchStatsRequest):
        return []  # counters only, no page
    return [str(request.tenant)]  # type: ignore[attr-defined]


class KVTransferError(RuntimeError):
    """A KV operation failed; `code` is the gRPC status name (e.g. "PERMISSION_DENIED")."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


class KVClient:
    def __init__(self, switch_address: str, *, timeout_s: float = 5.0) -> None:
        self.address = switch_address
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(switch_address, options=CHANNEL_OPTIONS)
        calls = with_faults(self._channel)
        self._kv = kv_pb2_grpc.MemoryNodeStub(calls)
        self._switch = switch_pb2_grpc.SuperNICSwitchStub(calls)
        self._capabilities: dict[str, str] = {}  # tenant -> the capability presented for it

    def present(self, tenant: int | str, capability: str) -> None:
        """From now on, calls that touch `tenant` present `capability`."""
        self._capabilities[str(tenant)] = capability

    def alloc(
        self, tenant: int, key: PageKey | None, length: int, memory_node: str = ""
    ) -> PageHandle:
        """The page of `key` on a memory node (the switch picks one unless named)."""
        request = kv_pb2.AllocRequest(tenant=tenant, length=length, memory_node=memory_node)
        if key is not None:
            request.key.CopyFrom(key_to_wire(key))
        handle = handle_from_wire(self._call(self._kv.Alloc, request).handle)
        if handle is None:
            raise KVTransferError("INTERNAL", "the switch answered alloc with an empty handle")
        return handle

    def write(self, tenant: int, memory_node: str, virtual_address: int, data: bytes) -> int:
        """Writes `data` at an address inside one page; returns the modelled latency (ns)."""
        request = kv_pb2.WriteRequest(
            tenant=tenant,
            virtual_address=virtual_address,
            data=bytes(data),
            memory_node=memory_node,
        )
        return self._call(self._kv.Write, request).latency_ns

    def write_page(self, handle: PageHandle, data: bytes, offset: int = 0) -> int:
        address = handle.virtual_address + offset
        return self.write(handle.tenant, handle.memory_node, address, data)

    def read(self, tenant: int, memory_node: str, virtual_address: int, length: int) -> bytes:
        request = kv_pb2.ReadRequest(
            tenant=tenant, virtual_address=virtual_address, length=length, memory_node=memory_node
        )
        return self._call(self._kv.Read, request).data

    def read_page(self, handle: PageHandle) -> bytes:
        return self.read(handle.tenant, handle.memory_node, handle.virtual_address, handle.length)

    def write_pages(
        self, tenant: int, pages: Sequence[tuple[PageKey, bytes]], memory_node: str = ""
    ) -> list[PageHandle]:
        """Allocates (or finds) each key's page and writes it whole, all in one call."""
        request = kv_pb2.WritePagesRequest(
            tenant=tenant,
            pages=[kv_pb2.PageWrite(key=key_to_wire(key), data=bytes(data)) for key, data in pages],
            memory_node=memory_node,
        )
        handles = [handle_from_wire(h) for h in self._call(self._kv.WritePages, request).handles]
        if len(handles) != len(pages) or any(h is None for h in handles):
            raise KVTransferError("INTERNAL", "the switch answered write_pages incompletely")
        return handles  # type: ignore[return-value]

    def put_pages(self, tenant: int, pages: Sequence[tuple[PageHandle, bytes]]) -> None:
        """Writes each page whole at its handle (pages allocated by `alloc_pages`), one call
        per memory node."""
        by_node: dict[str, list[kv_pb2.PageWrite]] = {}
        for handle, data in pages:
            write = kv_pb2.PageWrite(data=bytes(data), virtual_address=handle.virtual_address)
            by_node.setdefault(handle.memory_node, []).append(write)
        for node, writes in by_node.items():
            request = kv_pb2.WritePagesRequest(tenant=tenant, pages=writes, memory_node=node)
            self._call(self._kv.WritePages, request)

    def alloc_pages(
        self, tenant: int, count: int, length: int, lease_id: str, ttl_s: float = 0.0
    ) -> kv_pb2.KVLease:
        """`count` fresh pages of `length` bytes under a new lease (pages, nonce, expiry)."""
        request = kv_pb2.AllocPagesRequest(
            tenant=tenant, count=count, length=length, lease_id=lease_id, ttl_s=ttl_s
        )
        return self._call(self._kv.AllocPages, request).lease

    def account(self, moved: Sequence[switch_pb2.MovedBytes]) -> int:
        """Reports KV bytes moved one-sided to the switch; its modelled time (ns)."""
        return self._call(self._switch.Account, switch_pb2.MovedReport(moved=moved)).latency_ns

    def read_pages(self, tenant: int, handles: Sequence[PageHandle]) -> list[bytes]:
        """The pages' bytes, in the order given, in one call."""
        request = kv_pb2.ReadPagesRequest(
            tenant=tenant, pages=[handle_to_wire(handle) for handle in handles]
        )
        return list(self._call(self._kv.ReadPages, request).data)

    def free(self, tenant: int, memory_node: str, virtual_address: int) -> None:
        request = kv_pb2.FreeRequest(
            tenant=tenant, virtual_address=virtual_address, memory_node=memory_node
        )
        self._call(self._kv.Free, request)

    def lookup(
        self, tenant: int, keys: Sequence[PageKey], memory_node: str = ""
    ) -> list[PageHandle | None]:
        """The page of each key, or None; every memory node is asked unless one is named."""
        request = kv_pb2.LookupRequest(
            tenant=tenant, keys=[key_to_wire(key) for key in keys], memory_node=memory_node
        )
        return [handle_from_wire(msg) for msg in self._call(self._kv.Lookup, request).handles]

    def lock(
        self, tenant: int, memory_node: str, virtual_address: int, release: bool = False
    ) -> bool:
        """Test-and-set (or, with `release`, clear) the 8-byte lock word at the address."""
        request = kv_pb2.LockRequest(
            tenant=tenant, virtual_address=virtual_address, release=release, memory_node=memory_node
        )
        return self._call(self._kv.Lock, request).acquired

    def fence(self, tenant: int, memory_node: str = "") -> int:
        request = kv_pb2.FenceRequest(tenant=tenant, memory_node=memory_node)
        return self._call(self._kv.Fence, request).latency_ns

    def grant_lease(
        self, lease_id: str, tenant: int, pages: Sequence[Placed], ttl_s: float = 0.0
    ) -> float:
        """Pins the pages until released or `ttl_s` (0: the node's default) runs out; returns
        the earliest expiry (unix seconds) over the memory nodes holding them."""
        by_node: dict[str, list[int]] = {}
        for page in pages:
            by_node.setdefault(page.memory_node, []).append(page.virtual_address)
        expiries = [
            self._call(
                self._kv.GrantLease,
                kv_pb2.GrantLeaseRequest(
                    lease_id=lease_id,
                    tenant=tenant,
                    virtual_addresses=addresses,
                    ttl_s=ttl_s,
                    memory_node=node,
                ),
            ).expires_at_unix_s
            for node, addresses in by_node.items()
        ]
        return min(expiries, default=0.0)

    def release_lease(self, lease_id: str, tenant: int, memory_node: str = "") -> int:
        """Frees the tenant's lease's pages (on every memory node unless one is named);
        returns the pages freed. A transient failure is tried again, RELEASE_ATTEMPTS in all."""
        request = kv_pb2.ReleaseLeaseRequest(
            lease_id=lease_id, tenant=tenant, memory_node=memory_node
        )
        attempt = 1
        while True:
            try:
                return self._call(self._kv.ReleaseLease, request).pages_freed
            except KVTransferError as error:
                if error.code not in TRANSIENT_CODES or attempt == RELEASE_ATTEMPTS:
                    raise
            time.sleep(RELEASE_BACKOFF_S * 2 ** (attempt - 1))
            attempt += 1

    def switch_stats(self) -> dict[str, tuple[int, float]]:
        """Tenant -> (bytes through the switch, share) from the switch's Stats rpc."""
        reply = self._call(self._switch.Stats, switch_pb2.SwitchStatsRequest())
        return {usage.tenant: (usage.bytes, usage.share) for usage in reply.tenants}

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> KVClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Callable[..., R], request: Message) -> R:
        metadata = [
            (CAPABILITY_METADATA, self._capabilities[tenant])
            for tenant in tenants_touched(request)
            if tenant in self._capabilities
        ]
        try:
            return method(request, timeout=self.timeout_s, metadata=metadata)
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
            details = error.details() if hasattr(error, "details") else str(error)
            raise KVTransferError(code.name, details or "") from None
