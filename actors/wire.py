"""The one converter between wire messages (proto/tetriserve/v1) and the request model.

Everything that crosses an actor boundary or the gRPC front door is a protobuf message;
everything inside a process is a `cluster.request` dataclass. Nothing else builds messages
by hand.
"""

from __future__ import annotations

import time

from cluster.instance_flip import Role
from cluster.kv_pages import PageHandle, PageKey
from cluster.placement import InstanceLoad
from cluster.request import (
    FinishReason,
    GenerationRequest,
    SamplingSpec,
    TokenDelta,
    parse_model_name,
)
from tetriserve.v1 import generate_pb2, kv_pb2, scheduling_pb2

_FINISH_TO_WIRE = {
    None: generate_pb2.FINISH_REASON_UNSPECIFIED,
    FinishReason.LENGTH: generate_pb2.FINISH_REASON_LENGTH,
    FinishReason.STOP: generate_pb2.FINISH_REASON_STOP,
    FinishReason.ABORT: generate_pb2.FINISH_REASON_ABORT,
    FinishReason.ERROR: generate_pb2.FINISH_REASON_ERROR,
}
_FINISH_FROM_WIRE = {wire: reason for reason, wire in _FINISH_TO_WIRE.items()}
_ROLE_TO_WIRE = {
    Role.PREFILL: scheduling_pb2.INSTANCE_ROLE_PREFILL,
    Role.DECODE: scheduling_pb2.INSTANCE_ROLE_DECODE,
}
_ROLE_FROM_WIRE = {wire: role for role, wire in _ROLE_TO_WIRE.items()}


def sampling_to_wire(spec: SamplingSpec) -> generate_pb2.SamplingParams:
    return generate_pb2.SamplingParams(
        max_tokens=spec.max_tokens,
        temperature=spec.temperature,
        top_p=spec.top_p,
        top_k=spec.top_k,
        seed=spec.seed or 0,
        has_seed=spec.seed is not None,
        stop=list(spec.stop),
        ignore_eos=spec.ignore_eos,
        logprobs=spec.logprobs or 0,
        min_tokens=spec.min_tokens,
        frequency_penalty=spec.frequency_penalty,
        presence_penalty=spec.presence_penalty,
        repetition_penalty=spec.repetition_penalty,
    )


def sampling_from_wire(msg: generate_pb2.SamplingParams) -> SamplingSpec:
    return SamplingSpec(
        max_tokens=msg.max_tokens,
        temperature=msg.temperature,
        top_p=msg.top_p,
        top_k=msg.top_k,
        seed=msg.seed if msg.has_seed else None,
        stop=tuple(msg.stop),
        ignore_eos=msg.ignore_eos,
        logprobs=msg.logprobs or None,
        min_tokens=msg.min_tokens,
        frequency_penalty=msg.frequency_penalty,
        presence_penalty=msg.presence_penalty,
        repetition_penalty=msg.repetition_penalty or 1.0,
    )


def request_to_wire(request: GenerationRequest) -> generate_pb2.GenerateRequest:
    return generate_pb2.GenerateRequest(
        request_id=request.request_id,
        model=request.model_name,
        prompt=request.prompt,
        prompt_token_ids=list(request.prompt_token_ids),
        sampling=sampling_to_wire(request.sampling),
        trace_id=request.trace_id,
        adapter_version=request.adapter_version,
    )


def request_from_wire(msg: generate_pb2.GenerateRequest) -> GenerationRequest:
    return GenerationRequest(
        request_id=msg.request_id,
        prompt=msg.prompt,
        prompt_token_ids=tuple(msg.prompt_token_ids),
        adapter=parse_model_name(msg.model or "base"),
        sampling=sampling_from_wire(msg.sampling),
        trace_id=msg.trace_id,
        adapter_version=msg.adapter_version,
    )


def delta_to_wire(delta: TokenDelta) -> generate_pb2.GenerateResponse:
    return generate_pb2.GenerateResponse(
        request_id=delta.request_id,
        text_delta=delta.text,
        token_ids=list(delta.token_ids),
        finish_reason=_FINISH_TO_WIRE[delta.finish_reason],
        prompt_tokens=delta.prompt_tokens,
        completion_tokens=delta.completion_tokens,
        error=delta.error,
        cached_tokens=delta.cached_tokens,
    )


def delta_from_wire(msg: generate_pb2.GenerateResponse) -> TokenDelta:
    return TokenDelta(
        request_id=msg.request_id,
        text=msg.text_delta,
        token_ids=tuple(msg.token_ids),
        finish_reason=_FINISH_FROM_WIRE[msg.finish_reason],
        prompt_tokens=msg.prompt_tokens,
        completion_tokens=msg.completion_tokens,
        error=msg.error,
        cached_tokens=msg.cached_tokens,
    )


def load_to_wire(load: InstanceLoad, role: Role) -> scheduling_pb2.LoadReport:
    return scheduling_pb2.LoadReport(
        instance_id=load.instance_id,
        role=_ROLE_TO_WIRE[role],
        queued_requests=load.queued,
        running_requests=load.running,
        free_kv_tokens=load.free_kv_tokens,
        heavy_decodes=load.heavy_decodes,
        light_decodes=load.light_decodes,
        reported_at_unix_s=time.time(),
        predicted_decode_tokens=load.predicted_tokens,
    )


def role_from_wire(msg: scheduling_pb2.LoadReport) -> Role | None:
    """The role the reporting instance serves in; None when the report names none."""
    return _ROLE_FROM_WIRE.get(msg.role)


def load_from_wire(msg: scheduling_pb2.LoadReport) -> InstanceLoad:
    return InstanceLoad(
        instance_id=msg.instance_id,
        queued=msg.queued_requests,
        running=msg.running_requests,
        free_kv_tokens=msg.free_kv_tokens,
        heavy_decodes=msg.heavy_decodes,
        light_decodes=msg.light_decodes,
        predicted_tokens=msg.predicted_decode_tokens,
    )


def key_to_wire(key: PageKey) -> kv_pb2.KVPageKey:
    return kv_pb2.KVPageKey(
        model=key.model,
        adapter=key.adapter,
        prefix_hash=key.prefix_hash,
        block_index=key.block_index,
    )


def key_from_wire(msg: kv_pb2.KVPageKey) -> PageKey:
    return PageKey(msg.model, msg.adapter, msg.prefix_hash, msg.block_index)


def handle_to_wire(handle: PageHandle) -> kv_pb2.KVPageHandle:
    msg = kv_pb2.KVPageHandle(
        memory_node=handle.memory_node,
        tenant=handle.tenant,
        virtual_address=handle.virtual_address,
        length=handle.length,
        checksum=handle.checksum,
        arena=handle.arena,
        arena_offset=handle.arena_offset,
    )
    if handle.key is not None:
        msg.key.CopyFrom(key_to_wire(handle.key))
    return msg


def handle_from_wire(msg: kv_pb2.KVPageHandle) -> PageHandle | None:
    """The handle, or None for the empty handle that stands for "no page"."""
    if msg.length == 0:
        return None
    key = key_from_wire(msg.key) if msg.HasField("key") else None
    return PageHandle(
        key,
        msg.memory_node,
        msg.tenant,
        msg.virtual_address,
        msg.length,
        msg.checksum,
        msg.arena,
        msg.arena_offset,
    )


def lease_pages(lease: kv_pb2.KVLease) -> tuple[PageHandle, ...]:
    """The page handles a lease holds, in page order."""
    return tuple(handle for handle in map(handle_from_wire, lease.pages) if handle is not None)
