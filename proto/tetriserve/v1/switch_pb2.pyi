from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SwitchTransfer(_message.Message):
    __slots__ = ("tenant", "source", "destination", "payload", "chain")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    source: str
    destination: str
    payload: bytes
    chain: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant: _Optional[str] = ..., source: _Optional[str] = ..., destination: _Optional[str] = ..., payload: _Optional[bytes] = ..., chain: _Optional[_Iterable[str]] = ...) -> None: ...

class TransferReceipt(_message.Message):
    __slots__ = ("payload", "checksum", "bytes_in", "bytes_on_wire", "latency_ns", "replicas")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_ON_WIRE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    checksum: int
    bytes_in: int
    bytes_on_wire: int
    latency_ns: int
    replicas: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, payload: _Optional[bytes] = ..., checksum: _Optional[int] = ..., bytes_in: _Optional[int] = ..., bytes_on_wire: _Optional[int] = ..., latency_ns: _Optional[int] = ..., replicas: _Optional[_Iterable[str]] = ...) -> None: ...

class TenantUsage(_message.Message):
    __slots__ = ("tenant", "bytes", "share")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    bytes: int
    share: float
    def __init__(self, tenant: _Optional[str] = ..., bytes: _Optional[int] = ..., share: _Optional[float] = ...) -> None: ...

class SwitchStats(_message.Message):
    __slots__ = ("tenants",)
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[TenantUsage]
    def __init__(self, tenants: _Optional[_Iterable[_Union[TenantUsage, _Mapping]]] = ...) -> None: ...

class SwitchStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MovedBytes(_message.Message):
    __slots__ = ("tenant", "to_memory", "from_memory", "transfers")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TO_MEMORY_FIELD_NUMBER: _ClassVar[int]
    FROM_MEMORY_FIELD_NUMBER: _ClassVar[int]
    TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    to_memory: int
    from_memory: int
    transfers: int
    def __init__(self, tenant: _Optional[str] = ..., to_memory: _Optional[int] = ..., from_memory: _Optional[int] = ..., transfers: _Optional[int] = ...) -> None: ...

class MovedReport(_message.Message):
    __slots__ = ("moved",)
    MOVED_FIELD_NUMBER: _ClassVar[int]
    moved: _containers.RepeatedCompositeFieldContainer[MovedBytes]
    def __init__(self, moved: _Optional[_Iterable[_Union[MovedBytes, _Mapping]]] = ...) -> None: ...

class MovedAck(_message.Message):
    __slots__ = ("latency_ns",)
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    latency_ns: int
    def __init__(self, latency_ns: _Optional[int] = ...) -> None: ...
