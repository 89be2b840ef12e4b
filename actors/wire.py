"""The one converter between wire messages (proto/tetriserve/v1) and the request model.

Everything that crosses an actor boundary or the gRPC front door is a protobuf message;
everything inside a process is a `cluster.request` dataclass. Nothing else builds messages
by hand.
"""

from __future__ import annotations

from cluster.request import (
    FinishReason,
    GenerationRequest,
    SamplingSpec,
    TokenDelta,
    parse_model_name,
)
from tetriserve.v1 import generate_pb2

_FINISH_TO_WIRE = {
    None: generate_pb2.FINISH_REASON_UNSPECIFIED,
    FinishReason.LENGTH: generate_pb2.FINISH_REASON_LENGTH,
    FinishReason.STOP: generate_pb2.FINISH_REASON_STOP,
    FinishReason.ABORT: generate_pb2.FINISH_REASON_ABORT,
    FinishReason.ERROR: generate_pb2.FINISH_REASON_ERROR,
}
_FINISH_FROM_WIRE = {wire: reason for reason, wire in _FINISH_TO_WIRE.items()}


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
    )


def request_to_wire(request: GenerationRequest) -> generate_pb2.GenerateRequest:
    return generate_pb2.GenerateRequest(
        request_id=request.request_id,
        model=request.model_name,
        prompt=request.prompt,
        prompt_token_ids=list(request.prompt_token_ids),
        sampling=sampling_to_wire(request.sampling),
        trace_id=request.trace_id,
    )


def request_from_wire(msg: generate_pb2.GenerateRequest) -> GenerationRequest:
    return GenerationRequest(
        request_id=msg.request_id,
        prompt=msg.prompt,
        prompt_token_ids=tuple(msg.prompt_token_ids),
        adapter=parse_model_name(msg.model or "base"),
        sampling=sampling_from_wire(msg.sampling),
        trace_id=msg.trace_id,
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
    )
