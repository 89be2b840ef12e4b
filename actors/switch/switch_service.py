"""The gRPC face of a SuperNICSwitch: kv.proto's MemoryNode service as a proxy, and
switch.proto's SuperNICSwitch service (Transfer, Stats).

Request path: KVClient -> gRPC worker thread (this) -> SuperNICSwitch datapath -> MemoryNode
actor. Each rpc routes by its request's `memory_node` (Fence, Lookup and ReleaseLease with no
name go to every node), forwards the serialized request, and turns any failure into a gRPC
status: another tenant's or a forged address -> PERMISSION_DENIED, a freed page or an unknown
node -> NOT_FOUND, a bad length -> INVALID_ARGUMENT, a dead or slow node -> UNAVAILABLE.
Before any of it, the caller's KV capabilities (cluster/kv_capability.py) must cover every
tenant the request touches; they travel on to the memory nodes, which check them again. No
capability, or a forged, expired or other tenant's one -> PERMISSION_DENIED.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import grpc
from google.protobuf.message import Message
from ray.exceptions import GetTimeoutError, RayActorError

from actors.kv.kv_client import tenants_touched
from cluster.kv_capability import CAPABILITY_METADATA, CapabilityError
from cluster.page_store import (
    BadLengthError,
    CorruptPageError,
    ForeignPageError,
    FreedPageError,
    OutOfMemoryError,
    PageStoreError,
    UnmappedAddressError,
)
from fpga_models.supernic.tasks import REPLICA, ChecksumMismatch
from tetriserve.v1 import kv_pb2, kv_pb2_grpc, switch_pb2, switch_pb2_grpc

if TYPE_CHECKING:
    from actors.switch.supernic_switch import SuperNICSwitch

M = TypeVar("M", bound=Message)
Code = grpc.StatusCode


class RoutingError(LookupError):
    """The request names a memory node the switch does not know, or there is none."""


class BadRequestError(ValueError):
    """The request lacks what its operation needs (a memory node, a known network task)."""


_STATUS: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (CapabilityError, Code.PERMISSION_DENIED),
    (ForeignPageError, Code.PERMISSION_DENIED),
    (UnmappedAddressError, Code.PERMISSION_DENIED),
    (FreedPageError, Code.NOT_FOUND),
    (BadLengthError, Code.INVALID_ARGUMENT),
    (OutOfMemoryError, Code.RESOURCE_EXHAUSTED),
    (CorruptPageError, Code.DATA_LOSS),
    (ChecksumMismatch, Code.DATA_LOSS),
    (PageStoreError, Code.INTERNAL),
    (RoutingError, Code.NOT_FOUND),
    (BadRequestError, Code.INVALID_ARGUMENT),
    (GetTimeoutError, Code.UNAVAILABLE),
    (RayActorError, Code.UNAVAILABLE),
)


def status_of(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status for a failure (a memory node's error arrives wrapped by Ray) and its text."""
    cause = getattr(error, "cause", None) or error
    for kind, code in _STATUS:
        if isinstance(cause, kind) or isinstance(error, kind):
            return code, f"{type(cause).__name__}: {cause}"
    return Code.INTERNAL, f"{type(cause).__name__}: {cause}"


def capabilities(context: grpc.ServicerContext) -> list[str]:
    """The KV capabilities the caller presented (gRPC metadata; a call may carry several)."""
    metadata = context.invocation_metadata() or ()
    return [value for key, value in metadata if key == CAPABILITY_METADATA]


def _rpc(method: Callable[[SwitchService, M, grpc.ServicerContext], Message]) -> Callable:
    """An rpc that runs only with a capability for every tenant it touches; any failure
    becomes its gRPC status."""

    @functools.wraps(method)
    def run(self: SwitchService, request: M, context: grpc.ServicerContext) -> Message:
        try:
            presented = capabilities(context)
            for tenant in tenants_touched(request):
                self.switch.authority.check_any(presented, tenant)
            reply = method(self, request, context)
        except Exception as error:
            code, details = status_of(error)
            self.switch.count(method.__name__, code.name)
            context.abort(code, details)
        self.switch.count(method.__name__)
        return reply

    return run


class SwitchService(kv_pb2_grpc.MemoryNodeServicer, switch_pb2_grpc.SuperNICSwitchServicer):
    def __init__(self, switch: SuperNICSwitch) -> None:
        self.switch = switch

    @_rpc
    def Alloc(self, request: kv_pb2.AllocRequest, context: grpc.ServicerContext) -> Message:
        if not request.memory_node:
            request.memory_node = self.switch.place(request.key.prefix_hash, request.tenant)
        reply = self._one(context, "alloc", request, kv_pb2.AllocReply)
        reply.handle.memory_node = request.memory_node
        return reply

    @_rpc
    def AllocPages(
        self, request: kv_pb2.AllocPagesRequest, context: grpc.ServicerContext
    ) -> Message:
        if not request.memory_node:
            request.memory_node = self.switch.place(request.lease_id.encode(), request.tenant)
        reply = self._one(context, "alloc_pages", request, kv_pb2.AllocPagesReply)
        for handle in reply.lease.pages:
            handle.memory_node = request.memory_node
        return reply

    @_rpc
    def Free(self, request: kv_pb2.FreeRequest, context: grpc.ServicerContext) -> Message:
        return self._one(context, "free", request, kv_pb2.FreeReply)

    @_rpc
    def Read(self, request: kv_pb2.ReadRequest, context: grpc.ServicerContext) -> Message:
        reply = self._one(context, "read", request, kv_pb2.ReadReply)
        data, latency_ns = self.switch.carry(request.tenant, reply.data, inbound=False)
        return kv_pb2.ReadReply(data=data, latency_ns=reply.latency_ns + round(latency_ns))

    @_rpc
    def Write(self, request: kv_pb2.WriteRequest, context: grpc.ServicerContext) -> Message:
        self.switch.node(self._node_named(request.memory_node, "write"))
        request.data, latency_ns = self.switch.carry(request.tenant, request.data, inbound=True)
        reply = self._one(context, "write", request, kv_pb2.WriteReply)
        reply.latency_ns += round(latency_ns)
        return reply

    @_rpc
    def WritePages(
        self, request: kv_pb2.WritePagesRequest, context: grpc.ServicerContext
    ) -> Message:
        """All pages go to one memory node, placed by the first page's key."""
        if not request.pages:
            raise BadRequestError("write_pages needs at least one page")
        if not request.memory_node:
            first_key = request.pages[0].key
            request.memory_node = self.switch.place(first_key.prefix_hash, request.tenant)
        self.switch.node(request.memory_node)
        carried_ns = 0.0
        for page in request.pages:
            page.data, latency_ns = self.switch.carry(request.tenant, page.data, inbound=True)
            carried_ns += latency_ns
        reply = self._one(context, "write_pages", request, kv_pb2.WritePagesReply)
        for handle in reply.handles:
            handle.memory_node = request.memory_node
        reply.latency_ns += round(carried_ns)
        return reply

    @_rpc
    def ReadPages(self, request: kv_pb2.ReadPagesRequest, context: grpc.ServicerContext) -> Message:
        """One call per memory node holding some of the pages; the nodes' latencies overlap."""
        by_node: dict[str, list[int]] = {}
        for index, page in enumerate(request.pages):
            by_node.setdefault(self._node_named(page.memory_node, "read_pages"), []).append(index)
        pages, latency_ns = [b""] * len(request.pages), 0.0
        for name, indices in by_node.items():
            asked = kv_pb2.ReadPagesRequest(
                tenant=request.tenant, pages=[request.pages[i] for i in indices], memory_node=name
            )
            reply = self._one(context, "read_pages", asked, kv_pb2.ReadPagesReply)
            node_ns = float(reply.latency_ns)
            for index, data in zip(indices, reply.data, strict=True):
                pages[index], carried_ns = self.switch.carry(request.tenant, data, inbound=False)
                node_ns += carried_ns
            latency_ns = max(latency_ns, node_ns)
        return kv_pb2.ReadPagesReply(data=pages, latency_ns=round(latency_ns))

    @_rpc
    def Lock(self, request: kv_pb2.LockRequest, context: grpc.ServicerContext) -> Message:
        return self._one(context, "lock", request, kv_pb2.LockReply)

    @_rpc
    def Fence(self, request: kv_pb2.FenceRequest, context: grpc.ServicerContext) -> Message:
        replies = self._each(context, request.memory_node, "fence", request, kv_pb2.FenceReply)
        return kv_pb2.FenceReply(latency_ns=max(reply.latency_ns for _, reply in replies))

    @_rpc
    def Lookup(self, request: kv_pb2.LookupRequest, context: grpc.ServicerContext) -> Message:
        replies = self._each(
            context, request.memory_node, "lookup", request, kv_pb2.LookupReply, skip=True
        )
        merged = [kv_pb2.KVPageHandle() for _ in request.keys]
        for name, reply in replies:
            for slot, found in zip(merged, reply.handles, strict=True):
                if found.length and not slot.length:
                    slot.CopyFrom(found)
                    slot.memory_node = name
        latency_ns = max((reply.latency_ns for _, reply in replies), default=0)  # in parallel
        return kv_pb2.LookupReply(handles=merged, latency_ns=latency_ns)

    @_rpc
    def GrantLease(
        self, request: kv_pb2.GrantLeaseRequest, context: grpc.ServicerContext
    ) -> Message:
        return self._one(context, "grant_lease", request, kv_pb2.GrantLeaseReply)

    @_rpc
    def ReleaseLease(
        self, request: kv_pb2.ReleaseLeaseRequest, context: grpc.ServicerContext
    ) -> Message:
        replies = self._each(
            context,
            request.memory_node,
            "release_lease",
            request,
            kv_pb2.ReleaseLeaseReply,
            skip=True,
        )
        return kv_pb2.ReleaseLeaseReply(pages_freed=sum(reply.pages_freed for _, reply in replies))

    @_rpc
    def Transfer(
        self, request: switch_pb2.SwitchTransfer, context: grpc.ServicerContext
    ) -> Message:
        unknown = set(request.chain) - set(self.switch.snic.params.tasks)
        if unknown:
            raise BadRequestError(f"unknown network tasks {sorted(unknown)}")
        sent = self.switch.transfer(request.tenant, request.payload, tuple(request.chain))
        return switch_pb2.TransferReceipt(
            payload=sent.payload,
            checksum=int(sent.meta.get("crc32", 0)),
            bytes_in=len(request.payload),
            bytes_on_wire=len(sent.payload) + sum(len(copy) for copy in sent.replicas),
            latency_ns=round(sent.latency_ns),
            replicas=[REPLICA] * len(sent.replicas),
        )

    @_rpc
    def Account(self, request: switch_pb2.MovedReport, context: grpc.ServicerContext) -> Message:
        latency_ns = sum(
            self.switch.account(m.tenant, m.to_memory, m.from_memory, m.transfers)
            for m in request.moved
        )
        return switch_pb2.MovedAck(latency_ns=round(latency_ns))

    @_rpc
    def Stats(
        self, request: switch_pb2.SwitchStatsRequest, context: grpc.ServicerContext
    ) -> Message:
        return switch_pb2.SwitchStats(
            tenants=[
                switch_pb2.TenantUsage(
                    tenant=tenant, bytes=usage.bytes_in + usage.bytes_out, share=share
                )
                for tenant, (usage, share) in self.switch.usage().items()
            ]
        )

    # --- forwarding -------------------------------------------------------------------------
    def _one(
        self, context: grpc.ServicerContext, method: str, request: Message, reply: type[M]
    ) -> M:
        name = self._node_named(request.memory_node, method)  # type: ignore[attr-defined]
        return self._forward(context, [name], method, request, reply)[0][1]

    def _each(
        self,
        context: grpc.ServicerContext,
        name: str,
        method: str,
        request: Message,
        reply: type[M],
        skip: bool = False,
    ) -> list[tuple[str, M]]:
        """The named node, or every node; with `skip` and no name, unreachable nodes are left
        out (their pages are as good as gone) rather than failing the whole call."""
        names = [name] if name else sorted(self.switch.nodes)
        if not names:
            raise RoutingError("the switch has no memory nodes")
        return self._forward(context, names, method, request, reply, skip and not name)

    def _forward(
        self,
        context: grpc.ServicerContext,
        names: list[str],
        method: str,
        request: Message,
        reply: type[M],
        skip: bool = False,
    ) -> list[tuple[str, M]]:
        answers = self.switch.call(
            names,
            method,
            request.SerializeToString(),
            context.time_remaining(),
            capabilities(context),
            skip_unreachable=skip,
        )
        return [
            (name, reply.FromString(answer))
            for name, answer in zip(names, answers, strict=True)
            if answer is not None
        ]

    @staticmethod
    def _node_named(name: str, method: str) -> str:
        if not name:
            raise BadRequestError(f"{method} must name a memory node")
        return name
