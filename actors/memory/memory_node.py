"""MemoryNode actor: one disaggregated memory node holding KV pages for many tenants.

Request path, control: engine or instance -> KVClient -> SuperNICSwitch -> MemoryNode (this)
-> PageStore -> board. Data, one-sided: an engine on this machine copies page bytes straight
into and out of this node's shared arena (actors/kv/arena.py), at the places the handles of
`alloc_pages` name; no code of this node runs for it. Data through the switch (an engine on
another machine): `write_pages` and `read_pages`. Only switches call it, one method per
MemoryNode rpc, each taking a serialized kv.proto message and the capabilities that came
with it (cluster/kv_capability.py: each is checked again here, against the request's
tenant), and returning a serialized reply. A refused request raises a `cluster.page_store`
error or a CapabilityError, which Ray hands to the switch and the switch turns into a gRPC
status. Leases are reaped on every call (and by `reap`), against `clock` (unix seconds).
Deploy with `ray.remote(MemoryNode).remote("mem0", secret=...)`; without a `memory` it
stores pages on a Clio board model whose DRAM is the shared arena, and without an `index`
it keeps content keys and leases in a Storm remote hash table (one-sided reads first, OCC
transactions for every change), whose reads, RPCs, commits and aborts `stats()["index"]`
counts.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TypeVar

from google.protobuf.message import Message

from actors import cpu_priority
from actors.kv.arena import SharedArena
from actors.memory.clio_memory import ClioMemory
from actors.node_address import node_tag
from actors.wire import handle_to_wire, key_from_wire
from cluster.kv_capability import CapabilityAuthority
from cluster.kv_pages import PageHandle
from cluster.page_index import PageIndex
from cluster.page_store import Memory, PageStore
from fpga_models.clio.board import ClioBoard
from fpga_models.clio.memory import MappedMemory
from fpga_models.clio.params import ClioParams
from fpga_models.storm.page_index import StormPageIndex
from tetriserve.v1 import kv_pb2

M = TypeVar("M", bound=Message)


class MemoryNode:
    def __init__(
        self,
        name: str,
        memory: Memory | None = None,
        *,
        secret: bytes,
        index: PageIndex | None = None,
        lease_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        board: ClioParams | None = None,
    ) -> None:
        cpu_priority.yield_to_engines()
        self.name = name
        self.authority = CapabilityAuthority(secret)
        self.arena: SharedArena | None = None
        params = board or ClioParams()
        self.capacity_bytes: int | None = None  # unknown for memory handed in
        if memory is None:
            self.capacity_bytes = params.physical_memory_bytes
            self.arena = SharedArena.create(params.physical_memory_bytes, node=node_tag())
            mapped = MappedMemory(params.page_size, self.arena.buffer)
            memory = ClioMemory(ClioBoard(params, memory=mapped))
        self.memory = memory
        self.index = index if index is not None else StormPageIndex()
        # One store arena is one board page, so that a KV page never spans two frames and
        # lies whole in the shared arena.
        self.store = PageStore(
            self.memory, node=name, arena_bytes=params.page_size, index=self.index
        )
        self.lease_ttl_s = lease_ttl_s
        self.clock = clock
        self.ops: Counter[str] = Counter()

    def alloc(self, request: bytes, capabilities: Sequence[str] = ()) -> bytes:
        msg = self._open("alloc", kv_pb2.AllocRequest, request, capabilities)
        key = key_from_wire(msg.key) if msg.HasField("key") else None
        handle, existed, latency = self.store.alloc(msg.tenant, key, msg.length)
        located = handle_to_wire(self._located(handle))
        return _reply(kv_pb2.AllocReply(handle=located, existed=existed), latency)

    def free(self, request: bytes, capabilities: Sequence[str] = ()) -> bytes:
        msg = self._open("free", kv_pb2.FreeRequest, request, capabilities)
        return _reply(kv_pb2.FreeReply(), self.store.free(msg.tenant, msg.virtual_address))

    def read(self, request: bytes, capabilities: Sequence[str] = ()) -> bytes:
        msg = self._open("read", kv_pb2.ReadRequest, request, capabilities)
        data, latency = self.store.read(msg.tenant, msg.virtual_address, msg.length)
        return _reply(kv_pb2.ReadReply(data=data), latency)

    def write(self, request: bytes, capabilities: Sequence[str] = ()) -> bytes:
        msg = self._open("write", kv_pb2.WriteRequest, request, capabilities)
        return _reply(
            kv_pb2.WriteReply(), self.store.write(msg.tenant, msg.virtual_address, msg.data)
        )

    def write_pages(self, request: bytes, capabilities: Sequence[str] = ()) -> bytes:
        """Each page written whole: at its address, or allocated under its key first."""
        msg = self._open("write_pages", kv_pb2.WritePagesRequest, request, capabilities)
        handles, latency = [], 0.0
        for page in msg.pages:
            address = page.virtual_address
            if not address:
                key = key_from_wire(page.key)
                handle, _, alloc_ns = self.store.alloc(msg.tenant, key, len(page.data))
                address, latency = handle.virtual_address, latency + alloc_ns
            latency += self.store.write(msg.tenant, address, page.data)
            written = self._located(self.store.handle(msg.tenant, address))
            written = dataclasses.replace(written, checksum=zlib.crc32(page.data))
            handles.append(handle_to_wire(written))
        return _reply(kv_pb2.WritePagesReply(handles=handles), latency)

    def alloc_pages(self, request: bytes, capabilities: Sequence[str] = ()) -> bytes:
        """A request's pages under a new lease, located in the shared arena."""
        msg = self._open("alloc_pages", kv_pb2.AllocPagesRequest, request, capabilities)
        ttl_s = msg.ttl_s if msg.ttl_s > 0 else self.lease_ttl_s
        handles, expires, latency = self.store.alloc_pages(
            msg.tenant, msg.count, msg.length, msg.lease_id, ttl_s, self.clock()
        )
        lease = kv_pb2.KVLease(
            lease_id=msg.lease_id,
            pages=[handle_to_wire(self._located(handle)) for handle in handles],
            expires_at_unix_s=expires,
            nonce=secrets.randbits(64),
        )
        return _reply(kv_pb2.AllocPagesReply(lease=lease), latency)

    def _located(self, handle: PageHandle) -> PageHandle:
        """The handle with where its bytes sit in this node's shared arena, if it has one."""
        if self.arena is None or not isinstance(self.memory, ClioMemory):
            return handle
        board = self.store.board_address(handle.virtual_address)
        offset = self.memory.locate(handle.tenant, board)
        return dataclasses.replace(handle, arena=self.arena.name, arena_offset=offset)

    def read_pages(self, request: bytes, capabilities: Sequence[str] = ()) -> bytes:
        msg = self._open("read_pages", kv_pb2.ReadPagesRequest, request, capabilities)
        pages, latency = [], 0.0
        for page in msg.pages:
            data, read_ns = self.store.read(msg.tenant, page.virtual_address, page.length)
            pages.append(data)
            latency += read_ns
        return _reply(kv_pb2.ReadPagesReply(data=pages), latency)

    def lock(self, request: bytes, capabilities: Sequence[str] = ()) -> bytes:
        msg = self._open("lock", kv_pb2.LockRequest, request, capabilities)
        acquired, latency = self.store.lock(msg.tenant, msg.virtual_address, msg.release)
        return _reply(kv_pb2.LockReply(acquired=acquired), latency)

    def fence(self, request: bytes, capabilities: Sequence[str] = ()) -> bytes:
        msg = self._open("fence", kv_pb2.FenceRequest, request, capabilities)
        return _reply(kv_pb2.FenceReply(), self.store.fence(msg.tenant))

    def lookup(self, request: bytes, capabilities: Sequence[str] = ()) -> bytes:
        msg = self._open("lookup", kv_pb2.LookupRequest, request, capabilities)
        found, latency = self.store.find(msg.tenant, [key_from_wire(key) for key in msg.keys])
        handles = [handle_to_wire(self._located(h)) if h else kv_pb2.KVPageHandle() for h in found]
        return _reply(kv_pb2.LookupReply(handles=handles), latency)

    def grant_lease(self, request: bytes, capabilities: Sequence[str] = ()) -> bytes:
        msg = self._open("grant_lease", kv_pb2.GrantLeaseRequest, request, capabilities)
        ttl_s = msg.ttl_s if msg.ttl_s > 0 else self.lease_ttl_s
        expires = self.store.grant_lease(
            msg.lease_id, msg.tenant, list(msg.virtual_addresses), ttl_s, self.clock()
        )
        return kv_pb2.GrantLeaseReply(expires_at_unix_s=expires).SerializeToString()

    def release_lease(self, request: bytes, capabilities: Sequence[str] = ()) -> bytes:
        msg = self._open("release_lease", kv_pb2.ReleaseLeaseRequest, request, capabilities)
        freed = self.store.release_lease(msg.lease_id, msg.tenant)
        return kv_pb2.ReleaseLeaseReply(pages_freed=freed).SerializeToString()

    def reap(self) -> int:
        """Ends expired leases now; returns the pages that freed."""
        return self.store.expire(self.clock())

    def stats(self) -> dict[str, object]:
        self.reap()
        resident = getattr(self.memory, "resident_bytes", None)
        return {
            "name": self.name,
            **self.store.stats(),
            "resident_bytes": resident() if resident else None,
            "capacity_bytes": self.capacity_bytes,
            "tenant_pages": self.store.pages_by_tenant(),
            "ops": dict(self.ops),
            "index": self.index.stats(),
        }

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        """Gives the shared arena back (the pages in it are gone)."""
        if self.arena is not None:
            self.arena.close()
            self.arena = None

    def _open(
        self, op: str, message_type: type[M], request: bytes, capabilities: Sequence[str]
    ) -> M:
        """The request, once a capability for its tenant came with it (CapabilityError, which
        the switch answers with PERMISSION_DENIED, otherwise)."""
        self.ops[op] += 1
        msg = message_type.FromString(request)
        self.authority.check_any(list(capabilities), msg.tenant)  # type: ignore[attr-defined]
        self.store.expire(self.clock())
        return msg


def _reply(message: Message, latency_ns: float) -> bytes:
    message.latency_ns = round(latency_ns)
    return message.SerializeToString()
