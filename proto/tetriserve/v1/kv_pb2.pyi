from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KVPageKey(_message.Message):
    __slots__ = ("model", "adapter", "prefix_hash", "block_index")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    PREFIX_HASH_FIELD_NUMBER: _ClassVar[int]
    BLOCK_INDEX_FIELD_NUMBER: _ClassVar[int]
    model: str
    adapter: str
    prefix_hash: bytes
    block_index: int
    def __init__(self, model: _Optional[str] = ..., adapter: _Optional[str] = ..., prefix_hash: _Optional[bytes] = ..., block_index: _Optional[int] = ...) -> None: ...

class KVPageHandle(_message.Message):
    __slots__ = ("key", "memory_node", "tenant", "virtual_address", "length", "checksum", "arena", "arena_offset")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MEMORY_NODE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    ARENA_FIELD_NUMBER: _ClassVar[int]
    ARENA_OFFSET_FIELD_NUMBER: _ClassVar[int]
    key: KVPageKey
    memory_node: str
    tenant: int
    virtual_address: int
    length: int
    checksum: int
    arena: str
    arena_offset: int
    def __init__(self, key: _Optional[_Union[KVPageKey, _Mapping]] = ..., memory_node: _Optional[str] = ..., tenant: _Optional[int] = ..., virtual_address: _Optional[int] = ..., length: _Optional[int] = ..., checksum: _Optional[int] = ..., arena: _Optional[str] = ..., arena_offset: _Optional[int] = ...) -> None: ...

class KVLease(_message.Message):
    __slots__ = ("lease_id", "request_id", "pages", "num_tokens", "expires_at_unix_s", "nonce")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    request_id: str
    pages: _containers.RepeatedCompositeFieldContainer[KVPageHandle]
    num_tokens: int
    expires_at_unix_s: float
    nonce: int
    def __init__(self, lease_id: _Optional[str] = ..., request_id: _Optional[str] = ..., pages: _Optional[_Iterable[_Union[KVPageHandle, _Mapping]]] = ..., num_tokens: _Optional[int] = ..., expires_at_unix_s: _Optional[float] = ..., nonce: _Optional[int] = ...) -> None: ...

class AllocPagesRequest(_message.Message):
    __slots__ = ("tenant", "count", "length", "lease_id", "ttl_s", "memory_node")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    MEMORY_NODE_FIELD_NUMBER: _ClassVar[int]
    tenant: int
    count: int
    length: int
    lease_id: str
    ttl_s: float
    memory_node: str
    def __init__(self, tenant: _Optional[int] = ..., count: _Optional[int] = ..., length: _Optional[int] = ..., lease_id: _Optional[str] = ..., ttl_s: _Optional[float] = ..., memory_node: _Optional[str] = ...) -> None: ...

class AllocPagesReply(_message.Message):
    __slots__ = ("lease", "latency_ns")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    lease: KVLease
    latency_ns: int
    def __init__(self, lease: _Optional[_Union[KVLease, _Mapping]] = ..., latency_ns: _Optional[int] = ...) -> None: ...

class AllocRequest(_message.Message):
    __slots__ = ("tenant", "length", "key", "memory_node")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    MEMORY_NODE_FIELD_NUMBER: _ClassVar[int]
    tenant: int
    length: int
    key: KVPageKey
    memory_node: str
    def __init__(self, tenant: _Optional[int] = ..., length: _Optional[int] = ..., key: _Optional[_Union[KVPageKey, _Mapping]] = ..., memory_node: _Optional[str] = ...) -> None: ...

class AllocReply(_message.Message):
    __slots__ = ("handle", "existed", "latency_ns")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    handle: KVPageHandle
    existed: bool
    latency_ns: int
    def __init__(self, handle: _Optional[_Union[KVPageHandle, _Mapping]] = ..., existed: _Optional[bool] = ..., latency_ns: _Optional[int] = ...) -> None: ...

class FreeRequest(_message.Message):
    __slots__ = ("tenant", "virtual_address", "memory_node")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_NODE_FIELD_NUMBER: _ClassVar[int]
    tenant: int
    virtual_address: int
    memory_node: str
    def __init__(self, tenant: _Optional[int] = ..., virtual_address: _Optional[int] = ..., memory_node: _Optional[str] = ...) -> None: ...

class FreeReply(_message.Message):
    __slots__ = ("latency_ns",)
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    latency_ns: int
    def __init__(self, latency_ns: _Optional[int] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("tenant", "virtual_address", "length", "memory_node")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    MEMORY_NODE_FIELD_NUMBER: _ClassVar[int]
    tenant: int
    virtual_address: int
    length: int
    memory_node: str
    def __init__(self, tenant: _Optional[int] = ..., virtual_address: _Optional[int] = ..., length: _Optional[int] = ..., memory_node: _Optional[str] = ...) -> None: ...

class ReadReply(_message.Message):
    __slots__ = ("data", "latency_ns")
    DATA_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    latency_ns: int
    def __init__(self, data: _Optional[bytes] = ..., latency_ns: _Optional[int] = ...) -> None: ...

class WriteRequest(_message.Message):
    __slots__ = ("tenant", "virtual_address", "data", "memory_node")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MEMORY_NODE_FIELD_NUMBER: _ClassVar[int]
    tenant: int
    virtual_address: int
    data: bytes
    memory_node: str
    def __init__(self, tenant: _Optional[int] = ..., virtual_address: _Optional[int] = ..., data: _Optional[bytes] = ..., memory_node: _Optional[str] = ...) -> None: ...

class WriteReply(_message.Message):
    __slots__ = ("latency_ns",)
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    latency_ns: int
    def __init__(self, latency_ns: _Optional[int] = ...) -> None: ...

class LockRequest(_message.Message):
    __slots__ = ("tenant", "virtual_address", "release", "memory_node")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_NODE_FIELD_NUMBER: _ClassVar[int]
    tenant: int
    virtual_address: int
    release: bool
    memory_node: str
    def __init__(self, tenant: _Optional[int] = ..., virtual_address: _Optional[int] = ..., release: _Optional[bool] = ..., memory_node: _Optional[str] = ...) -> None: ...

class LockReply(_message.Message):
    __slots__ = ("acquired", "latency_ns")
    ACQUIRED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    acquired: bool
    latency_ns: int
    def __init__(self, acquired: _Optional[bool] = ..., latency_ns: _Optional[int] = ...) -> None: ...

class FenceRequest(_message.Message):
    __slots__ = ("tenant", "memory_node")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_NODE_FIELD_NUMBER: _ClassVar[int]
    tenant: int
    memory_node: str
    def __init__(self, tenant: _Optional[int] = ..., memory_node: _Optional[str] = ...) -> None: ...

class FenceReply(_message.Message):
    __slots__ = ("latency_ns",)
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    latency_ns: int
    def __init__(self, latency_ns: _Optional[int] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("tenant", "keys", "memory_node")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_NODE_FIELD_NUMBER: _ClassVar[int]
    tenant: int
    keys: _containers.RepeatedCompositeFieldContainer[KVPageKey]
    memory_node: str
    def __init__(self, tenant: _Optional[int] = ..., keys: _Optional[_Iterable[_Union[KVPageKey, _Mapping]]] = ..., memory_node: _Optional[str] = ...) -> None: ...

class LookupReply(_message.Message):
    __slots__ = ("handles", "latency_ns")
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    handles: _containers.RepeatedCompositeFieldContainer[KVPageHandle]
    latency_ns: int
    def __init__(self, handles: _Optional[_Iterable[_Union[KVPageHandle, _Mapping]]] = ..., latency_ns: _Optional[int] = ...) -> None: ...

class GrantLeaseRequest(_message.Message):
    __slots__ = ("lease_id", "tenant", "virtual_addresses", "ttl_s", "memory_node")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    MEMORY_NODE_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    tenant: int
    virtual_addresses: _containers.RepeatedScalarFieldContainer[int]
    ttl_s: float
    memory_node: str
    def __init__(self, lease_id: _Optional[str] = ..., tenant: _Optional[int] = ..., virtual_addresses: _Optional[_Iterable[int]] = ..., ttl_s: _Optional[float] = ..., memory_node: _Optional[str] = ...) -> None: ...

class GrantLeaseReply(_message.Message):
    __slots__ = ("expires_at_unix_s",)
    EXPIRES_AT_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    expires_at_unix_s: float
    def __init__(self, expires_at_unix_s: _Optional[float] = ...) -> None: ...

class ReleaseLeaseRequest(_message.Message):
    __slots__ = ("lease_id", "memory_node", "tenant")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_NODE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    memory_node: str
    tenant: int
    def __init__(self, lease_id: _Optional[str] = ..., memory_node: _Optional[str] = ..., tenant: _Optional[int] = ...) -> None: ...

class ReleaseLeaseReply(_message.Message):
    __slots__ = ("pages_freed",)
    PAGES_FREED_FIELD_NUMBER: _ClassVar[int]
    pages_freed: int
    def __init__(self, pages_freed: _Optional[int] = ...) -> None: ...

class PageWrite(_message.Message):
    __slots__ = ("key", "data", "virtual_address")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    key: KVPageKey
    data: bytes
    virtual_address: int
    def __init__(self, key: _Optional[_Union[KVPageKey, _Mapping]] = ..., data: _Optional[bytes] = ..., virtual_address: _Optional[int] = ...) -> None: ...

class WritePagesRequest(_message.Message):
    __slots__ = ("tenant", "pages", "memory_node")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_NODE_FIELD_NUMBER: _ClassVar[int]
    tenant: int
    pages: _containers.RepeatedCompositeFieldContainer[PageWrite]
    memory_node: str
    def __init__(self, tenant: _Optional[int] = ..., pages: _Optional[_Iterable[_Union[PageWrite, _Mapping]]] = ..., memory_node: _Optional[str] = ...) -> None: ...

class WritePagesReply(_message.Message):
    __slots__ = ("handles", "latency_ns")
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    handles: _containers.RepeatedCompositeFieldContainer[KVPageHandle]
    latency_ns: int
    def __init__(self, handles: _Optional[_Iterable[_Union[KVPageHandle, _Mapping]]] = ..., latency_ns: _Optional[int] = ...) -> None: ...

class ReadPagesRequest(_message.Message):
    __slots__ = ("tenant", "pages", "memory_node")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_NODE_FIELD_NUMBER: _ClassVar[int]
    tenant: int
    pages: _containers.RepeatedCompositeFieldContainer[KVPageHandle]
    memory_node: str
    def __init__(self, tenant: _Optional[int] = ..., pages: _Optional[_Iterable[_Union[KVPageHandle, _Mapping]]] = ..., memory_node: _Optional[str] = ...) -> None: ...

class ReadPagesReply(_message.Message):
    __slots__ = ("data", "latency_ns")
    DATA_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedScalarFieldContainer[bytes]
    latency_ns: int
    def __init__(self, data: _Optional[_Iterable[bytes]] = ..., latency_ns: _Optional[int] = ...) -> None: ...
