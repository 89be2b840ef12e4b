"""MemoryNode actor: one disaggregated memory node holding KV pages for many tenants.

Request path: engine -> KVClient -> SuperNICSwitch -> MemoryNode (this) -> PageStore -> board.
Only switches call it, one method per MemoryNode rpc, each taking and returning a serialized
kv.proto message. A refused request raises a `cluster.page_store` error, which Ray hands to
the switch and the switch turns into a gRPC status. Leases are reaped on every call (and by
`reap`), against `clock` (unix seconds). Deploy with `ray.remote(MemoryNode).remote("mem0")`;
without a `memory` it stores pages on a Clio board model, and without an `index` it keeps
content keys and leases in a Storm remote hash table (one-sided reads first, OCC transactions
for every change), whose reads, RPCs, commits and aborts `stats()["index"]` counts.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from google.protobuf.message import Message

from actors.memory.clio_memory import ClioMemory
from actors.wire import handle_to_wire, key_from_wire
from cluster.page_index import PageIndex
from cluster.page_store import Memory, PageStore
from fpga_models.storm.page_index import StormPageIndex
from tetriserve.v1 import kv_pb2

M = TypeVar("M", bound=Message)


class MemoryNode:
    def __init__(
        self,
        name: str,
        memory: Memory | None = None,
        *,
        index: PageIndex | None = None,
        arena_bytes: int = 4 << 20,
        lease_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.memory = memory if memory is not None else ClioMemory()
        self.index = index if index is not None else StormPageIndex()
        self.store = PageStore(self.memory, node=name, arena_bytes=arena_bytes, index=self.index)
        self.lease_ttl_s = lease_ttl_s
        self.clock = clock
        self.ops: Counter[str] = Counter()

    def alloc(self, request: bytes) -> bytes:
        msg = self._open("alloc", kv_pb2.AllocRequest, request)
        key = key_from_wire(msg.key) if msg.HasField("key") else None
        handle, existed, latency = self.store.alloc(msg.tenant, key, msg.length)
        return _reply(kv_pb2.AllocReply(handle=handle_to_wire(handle), existed=existed), latency)

    def free(self, request: bytes) -> bytes:
        msg = self._open("free", kv_pb2.FreeRequest, request)
        return _reply(kv_pb2.FreeReply(), self.store.free(msg.tenant, msg.virtual_address))

    def read(self, request: bytes) -> bytes:
        msg = self._open("read", kv_pb2.ReadRequest, request)
        data, latency = self.store.read(msg.tenant, msg.virtual_address, msg.length)
        return _reply(kv_pb2.ReadReply(data=data), latency)

    def write(self, request: bytes) -> bytes:
        msg = self._open("write", kv_pb2.WriteRequest, request)
        return _reply(
            kv_pb2.WriteReply(), self.store.write(msg.tenant, msg.virtual_address, msg.data)
        )

    def write_pages(self, request: bytes) -> bytes:
        msg = self._open("write_pages", kv_pb2.WritePagesRequest, request)
        handles, latency = [], 0.0
        for page in msg.pages:
            key = key_from_wire(page.key)
            handle, _, alloc_ns = self.store.alloc(msg.tenant, key, len(page.data))
            latency += alloc_ns + self.store.write(msg.tenant, handle.virtual_address, page.data)
            written = dataclasses.replace(handle, checksum=zlib.crc32(page.data))
            handles.append(handle_to_wire(written))
        return _reply(kv_pb2.WritePagesReply(handles=handles), latency)

    def read_pages(self, request: bytes) -> bytes:
        msg = self._open("read_pages", kv_pb2.ReadPagesRequest, request)
        pages, latency = [], 0.0
        for page in msg.pages:
            data, read_ns = self.store.read(msg.tenant, page.virtual_address, page.length)
            pages.append(data)
            latency += read_ns
        return _reply(kv_pb2.ReadPagesReply(data=pages), latency)

    def lock(self, request: bytes) -> bytes:
        msg = self._open("lock", kv_pb2.LockRequest, request)
        acquired, latency = self.store.lock(msg.tenant, msg.virtual_address, msg.release)
        return _reply(kv_pb2.LockReply(acquired=acquired), latency)

    def fence(self, request: bytes) -> bytes:
        msg = self._open("fence", kv_pb2.FenceRequest, request)
        return _reply(kv_pb2.FenceReply(), self.store.fence(msg.tenant))

    def lookup(self, request: bytes) -> bytes:
        msg = self._open("lookup", kv_pb2.LookupRequest, request)
        found, latency = self.store.find(msg.tenant, [key_from_wire(key) for key in msg.keys])
        handles = [handle_to_wire(h) if h else kv_pb2.KVPageHandle() for h in found]
        return _reply(kv_pb2.LookupReply(handles=handles), latency)

    def grant_lease(self, request: bytes) -> bytes:
        msg = self._open("grant_lease", kv_pb2.GrantLeaseRequest, request)
        ttl_s = msg.ttl_s if msg.ttl_s > 0 else self.lease_ttl_s
        expires = self.store.grant_lease(
            msg.lease_id, msg.tenant, list(msg.virtual_addresses), ttl_s, self.clock()
        )
        return kv_pb2.GrantLeaseReply(expires_at_unix_s=expires).SerializeToString()

    def release_lease(self, request: bytes) -> bytes:
        msg = self._open("release_lease", kv_pb2.ReleaseLeaseRequest, request)
        freed = self.store.release_lease(msg.lease_id)
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
            "ops": dict(self.ops),
            "index": self.index.stats(),
        }

    def ready(self) -> bool:
        return True

    def _open(self, op: str, message_type: type[M], request: bytes) -> M:
        self.ops[op] += 1
        self.store.expire(self.clock())
        return message_type.FromString(request)


def _reply(message: Message, latency_ns: float) -> bytes:
    message.latency_ns = round(latency_ns)
    return message.SerializeToString()
