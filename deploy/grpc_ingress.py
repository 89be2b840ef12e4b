"""The gRPC front door: `tetriserve.v1.Generation`, served by Ray Serve's gRPC proxy.

Client (metadata `application: tetriserve`) → Serve's gRPC proxy → `Generate` on the
ingress replica, which checks the request by the same rules as `/v1/completions` → the
request path (actors/request/request_path.py) → one `GenerateResponse` per token step, the last
with `finish_reason` set. A refusal ends the call with a gRPC status code instead of a 4xx:
bad input INVALID_ARGUMENT, unknown model or adapter NOT_FOUND, over capacity
RESOURCE_EXHAUSTED (with a `retry-after` trailer), a backend failure INTERNAL.
`LoadLoraAdapter` and `UnloadLoraAdapter` are vLLM's /v1/load_lora_adapter and
/v1/unload_lora_adapter (deploy/lora_admin.py), with the same codes in gRPC's terms.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable
from typing import Any, NoReturn

import grpc
from ray.serve.grpc_util import RayServegRPCContext

from actors.metrics import API_ERRORS
from actors.wire import delta_to_wire
from cluster.request import GenerationRequest
from deploy.openai_protocol import APIError, CompletionRequest, bad_request, new_id, validated
from deploy.prompt_renderer import DEFAULT_COMPLETION_TOKENS, PromptRenderer
from tetriserve.v1 import adapters_pb2, generate_pb2

SERVICER = "tetriserve.v1.generate_pb2_grpc.add_GenerationServicer_to_server"
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


class GrpcRefused(Exception):
    """Ends a call whose status code is already set on the gRPC context."""


def grpc_options(port: int) -> dict[str, Any]:
    """Serve's `grpc_options` for a proxy that serves `tetriserve.v1.Generation` on `port`."""
    return {"port": port, "grpc_servicer_functions": [SERVICER]}


def completion_payload(msg: generate_pb2.GenerateRequest) -> dict[str, Any]:
    """The call as a `/v1/completions` body; a proto3 zero or empty field means "not given"."""
    if msg.prompt and msg.prompt_token_ids:
        raise bad_request("give prompt or prompt_token_ids, not both", "prompt")
    sampling = msg.sampling
    given = {
        "model": msg.model,
        "max_tokens": sampling.max_tokens,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "logprobs": sampling.logprobs,
        "min_tokens": sampling.min_tokens,
        "repetition_penalty": sampling.repetition_penalty,
    }
    return {key: value for key, value in given.items() if value} | {
        "prompt": msg.prompt or list(msg.prompt_token_ids),
        "temperature": sampling.temperature,
        "seed": sampling.seed if sampling.has_seed else None,
        "stop": list(sampling.stop),
        "ignore_eos": sampling.ignore_eos,
        "frequency_penalty": sampling.frequency_penalty,
        "presence_penalty": sampling.presence_penalty,
    }


class GrpcGeneration:
    """Mixin for the ingress deployment; the host class provides `renderer`, `_resolve`
    (model name → adapter and version, or APIError), `_stream` (the request path's deltas,
    with errors and refusals raised as APIError), `_load_lora` and `_unload_lora`
    (deploy/lora_admin.py). Serve's gRPC proxy calls the method that bears the rpc's name,
    with the call's `RayServegRPCContext` as the `grpc_context` keyword."""

    renderer: PromptRenderer

    async def Generate(
        self,
        request: generate_pb2.GenerateRequest,
        grpc_context: RayServegRPCContext | None = None,
    ) -> AsyncIterator[generate_pb2.GenerateResponse]:
        try:
            generation, model = await asyncio.to_thread(self._generation, request)
            adapter, version = await self._resolve(model)
            generation = dataclasses.replace(generation, adapter=adapter, adapter_version=version)
            async for delta in self._stream(generation):
                yield delta_to_wire(delta)
        except APIError as exc:
            _refuse(exc, grpc_context)

    async def LoadLoraAdapter(
        self,
        request: adapters_pb2.LoadLoraAdapterRequest,
        grpc_context: RayServegRPCContext | None = None,
    ) -> adapters_pb2.LoraAdapterReply:
        return await _replied(self._load_lora(request.lora_name, request.lora_path), grpc_context)

    async def UnloadLoraAdapter(
        self,
        request: adapters_pb2.UnloadLoraAdapterRequest,
        grpc_context: RayServegRPCContext | None = None,
    ) -> adapters_pb2.LoraAdapterReply:
        return await _replied(self._unload_lora(request.lora_name), grpc_context)

    def _generation(self, msg: generate_pb2.GenerateRequest) -> tuple[GenerationRequest, str]:
        """The call as a request (its adapter not yet resolved) and the model it names."""
        body = validated(CompletionRequest, completion_payload(msg))
        tokens = self.renderer.completion_tokens(body.prompt)
        max_tokens = self.renderer.max_tokens(
            len(tokens), body.max_tokens, DEFAULT_COMPLETION_TOKENS
        )
        request_id = msg.request_id or new_id("gen")
        request = GenerationRequest(
            request_id=request_id,
            prompt_token_ids=tuple(tokens),
            sampling=body.sampling(max_tokens),
            trace_id=msg.trace_id or request_id,
        )
        return request, body.model


async def _replied(
    message: Awaitable[str], grpc_context: RayServegRPCContext | None
) -> adapters_pb2.LoraAdapterReply:
    try:
        return adapters_pb2.LoraAdapterReply(message=await message)
    except APIError as exc:
        _refuse(exc, grpc_context)


def _refuse(exc: APIError, grpc_context: RayServegRPCContext | None) -> NoReturn:
    """Ends the call with the gRPC status of `exc` (raises it again without a context)."""
    if grpc_context is None:
        raise exc
    API_ERRORS.labels(str(exc.status)).inc()
    grpc_context.set_code(STATUS_CODES.get(exc.status, grpc.StatusCode.INTERNAL))
    grpc_context.set_details(exc.message)
    # A refusal for load carries its Retry-After as trailing metadata.
    grpc_context.set_trailing_metadata([(k.lower(), v) for k, v in exc.headers.items()])
    raise GrpcRefused(exc.message) from None
