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
    __slots__ = ("key", "memory_node", "tenant", "virtual_address", "length", "checksum")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MEMORY_NODE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    key: KVPageKey
    memory_node: str
    tenant: int
    virtual_address: int
    length: int
    checksum: int
    def __init__(self, key: _Optional[_Union[KVPageKey, _Mapping]] = ..., memory_node: _Optional[str] = ..., tenant: _Optional[int] = ..., virtual_address: _Optional[int] = ..., length: _Optional[int] = ..., checksum: _Optional[int] = ...) -> None: ...

class KVLease(_message.Message):
    __slots__ = ("lease_id", "request_id", "pages", "num_tokens", "expires_at_unix_s")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    request_id: str
    pages: _containers.RepeatedCompositeFieldContainer[KVPageHandle]
    num_tokens: int
    expires_at_unix_s: float
    def __init__(self, lease_id: _Optional[str] = ..., request_id: _Optional[str] = ..., pages: _Optional[_Iterable[_Union[KVPageHandle, _Mapping]]] = ..., num_tokens: _Optional[int] = ..., expires_at_unix_s: _Optional[float] = ...) -> None: ...

class AllocRequest(_message.Message):
    __slots__ = ("tenant", "length")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    tenant: int
    length: int
    def __init__(self, tenant: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class AllocReply(_message.Message):
    __slots__ = ("virtual_address", "latency_ns")
    VIRTUAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    virtual_address: int
    latency_ns: int
    def __init__(self, virtual_address: _Optional[int] = ..., latency_ns: _Optional[int] = ...) -> None: ...

class FreeRequest(_message.Message):
    __slots__ = ("tenant", "virtual_address")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    tenant: int
    virtual_address: int
    def __init__(self, tenant: _Optional[int] = ..., virtual_address: _Optional[int] = ...) -> None: ...

class FreeReply(_message.Message):
    __slots__ = ("latency_ns",)
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    latency_ns: int
    def __init__(self, latency_ns: _Optional[int] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("tenant", "virtual_address", "length")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    tenant: int
    virtual_address: int
    length: int
    def __init__(self, tenant: _Optional[int] = ..., virtual_address: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class ReadReply(_message.Message):
    __slots__ = ("data", "latency_ns")
    DATA_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    latency_ns: int
    def __init__(self, data: _Optional[bytes] = ..., latency_ns: _Optional[int] = ...) -> None: ...

class WriteRequest(_message.Message):
    __slots__ = ("tenant", "virtual_address", "data")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    tenant: int
    virtual_address: int
    data: bytes
    def __init__(self, tenant: _Optional[int] = ..., virtual_address: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class WriteReply(_message.Message):
    __slots__ = ("latency_ns",)
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    latency_ns: int
    def __init__(self, latency_ns: _Optional[int] = ...) -> None: ...

class LockRequest(_message.Message):
    __slots__ = ("tenant", "virtual_address", "release")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    tenant: int
    virtual_address: int
    release: bool
    def __init__(self, tenant: _Optional[int] = ..., virtual_address: _Optional[int] = ..., release: _Optional[bool] = ...) -> None: ...

class LockReply(_message.Message):
    __slots__ = ("acquired", "latency_ns")
    ACQUIRED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    acquired: bool
    latency_ns: int
    def __init__(self, acquired: _Optional[bool] = ..., latency_ns: _Optional[int] = ...) -> None: ...

class FenceRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: int
    def __init__(self, tenant: _Optional[int] = ...) -> None: ...

class FenceReply(_message.Message):
    __slots__ = ("latency_ns",)
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    latency_ns: int
    def __init__(self, latency_ns: _Optional[int] = ...) -> None: ...
