from tetriserve.v1 import generate_pb2 as _generate_pb2
from tetriserve.v1 import kv_pb2 as _kv_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InstanceRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INSTANCE_ROLE_UNSPECIFIED: _ClassVar[InstanceRole]
    INSTANCE_ROLE_PREFILL: _ClassVar[InstanceRole]
    INSTANCE_ROLE_DECODE: _ClassVar[InstanceRole]
INSTANCE_ROLE_UNSPECIFIED: InstanceRole
INSTANCE_ROLE_PREFILL: InstanceRole
INSTANCE_ROLE_DECODE: InstanceRole

class LoadReport(_message.Message):
    __slots__ = ("instance_id", "role", "queued_requests", "running_requests", "queued_prompt_tokens", "free_kv_tokens", "total_kv_tokens", "heavy_decodes", "light_decodes", "loaded_adapters", "reported_at_unix_s", "predicted_decode_tokens")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    QUEUED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FREE_KV_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_KV_TOKENS_FIELD_NUMBER: _ClassVar[int]
    HEAVY_DECODES_FIELD_NUMBER: _ClassVar[int]
    LIGHT_DECODES_FIELD_NUMBER: _ClassVar[int]
    LOADED_ADAPTERS_FIELD_NUMBER: _ClassVar[int]
    REPORTED_AT_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_DECODE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    role: InstanceRole
    queued_requests: int
    running_requests: int
    queued_prompt_tokens: int
    free_kv_tokens: int
    total_kv_tokens: int
    heavy_decodes: int
    light_decodes: int
    loaded_adapters: _containers.RepeatedScalarFieldContainer[str]
    reported_at_unix_s: float
    predicted_decode_tokens: int
    def __init__(self, instance_id: _Optional[str] = ..., role: _Optional[_Union[InstanceRole, str]] = ..., queued_requests: _Optional[int] = ..., running_requests: _Optional[int] = ..., queued_prompt_tokens: _Optional[int] = ..., free_kv_tokens: _Optional[int] = ..., total_kv_tokens: _Optional[int] = ..., heavy_decodes: _Optional[int] = ..., light_decodes: _Optional[int] = ..., loaded_adapters: _Optional[_Iterable[str]] = ..., reported_at_unix_s: _Optional[float] = ..., predicted_decode_tokens: _Optional[int] = ...) -> None: ...

class DispatchDecision(_message.Message):
    __slots__ = ("request_id", "prefill_instance", "decode_instance", "predicted_decode_bucket", "predicted_decode_tokens", "policy", "heavy_decode", "kv_capability")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PREFILL_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    DECODE_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_DECODE_BUCKET_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_DECODE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    HEAVY_DECODE_FIELD_NUMBER: _ClassVar[int]
    KV_CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    prefill_instance: str
    decode_instance: str
    predicted_decode_bucket: int
    predicted_decode_tokens: int
    policy: str
    heavy_decode: bool
    kv_capability: str
    def __init__(self, request_id: _Optional[str] = ..., prefill_instance: _Optional[str] = ..., decode_instance: _Optional[str] = ..., predicted_decode_bucket: _Optional[int] = ..., predicted_decode_tokens: _Optional[int] = ..., policy: _Optional[str] = ..., heavy_decode: _Optional[bool] = ..., kv_capability: _Optional[str] = ...) -> None: ...

class PrefillTask(_message.Message):
    __slots__ = ("request", "decision")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    request: _generate_pb2.GenerateRequest
    decision: DispatchDecision
    def __init__(self, request: _Optional[_Union[_generate_pb2.GenerateRequest, _Mapping]] = ..., decision: _Optional[_Union[DispatchDecision, _Mapping]] = ...) -> None: ...

class DecodeTask(_message.Message):
    __slots__ = ("request", "decision", "lease", "prompt_token_ids", "prefill_output_token_ids")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    PREFILL_OUTPUT_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    request: _generate_pb2.GenerateRequest
    decision: DispatchDecision
    lease: _kv_pb2.KVLease
    prompt_token_ids: _containers.RepeatedScalarFieldContainer[int]
    prefill_output_token_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, request: _Optional[_Union[_generate_pb2.GenerateRequest, _Mapping]] = ..., decision: _Optional[_Union[DispatchDecision, _Mapping]] = ..., lease: _Optional[_Union[_kv_pb2.KVLease, _Mapping]] = ..., prompt_token_ids: _Optional[_Iterable[int]] = ..., prefill_output_token_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class PrefillStarted(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PrefillEvent(_message.Message):
    __slots__ = ("started", "first_token", "decode_task")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FIRST_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DECODE_TASK_FIELD_NUMBER: _ClassVar[int]
    started: PrefillStarted
    first_token: _generate_pb2.GenerateResponse
    decode_task: DecodeTask
    def __init__(self, started: _Optional[_Union[PrefillStarted, _Mapping]] = ..., first_token: _Optional[_Union[_generate_pb2.GenerateResponse, _Mapping]] = ..., decode_task: _Optional[_Union[DecodeTask, _Mapping]] = ...) -> None: ...

class LoadReportAck(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    def __init__(self, accepted: _Optional[bool] = ...) -> None: ...
