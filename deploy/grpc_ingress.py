"""The gRPC front door: `tetriserve.v1.Generation/Generate`, served by Ray Serve's gRPC proxy.

Client (metadata `application: tetriserve`) → Serve's gRPC proxy → `Generate` on the
ingress replica, which checks the request by the same rules as `/v1/completions` → the
request path (actors/request/request_path.py) → one `GenerateResponse` per token step, the last
with `finish_reason` set. A refusal ends the call with a gRPC status code instead of a 4xx:
bad input INVALID_ARGUMENT, unknown model or adapter NOT_FOUND, over capacity
RESOURCE_EXHAUSTED (with a `retry-after` trailer), a backend failure INTERNAL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from ray.serve.grpc_util import RayServegRPCContext

from actors.metrics import API_ERRORS
from actors.wire import delta_to_wire
from cluster.request import GenerationRequest
from deploy.openai_protocol import APIError, CompletionRequest, bad_request, new_id, validated
from deploy.prompt_renderer import DEFAULT_COMPLETION_TOKENS, PromptRenderer
from tetriserve.v1 import generate_pb2

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
    """Mixin for the ingress deployment; the host class provides `renderer`, `_adapter`
    (model name → adapter, or APIError) and `_stream` (the request path's deltas, with
    errors and refusals raised as APIError). Serve's gRPC proxy calls the method that bears
    the rpc's name, with the call's `RayServegRPCContext` as the `grpc_context` keyword."""

    renderer: PromptRenderer

    async def Generate(
        self,
        request: generate_pb2.GenerateRequest,
        grpc_context: RayServegRPCContext | None = None,
    ) -> AsyncIterator[generate_pb2.GenerateResponse]:
        try:
            generation = await asyncio.to_thread(self._generation, request)
            async for delta in self._stream(generation):
                yield delta_to_wire(delta)
        except APIError as exc:
            if grpc_context is None:
                raise
            API_ERRORS.labels(str(exc.status)).inc()
            grpc_context.set_code(STATUS_CODES.get(exc.status, grpc.StatusCode.INTERNAL))
            grpc_context.set_details(exc.message)
            # A refusal for load carries its Retry-After as trailing metadata.
            grpc_context.set_trailing_metadata([(k.lower(), v) for k, v in exc.headers.items()])
            raise GrpcRefused(exc.message) from None

    def _generation(self, msg: generate_pb2.GenerateRequest) -> GenerationRequest:
        body = validated(CompletionRequest, completion_payload(msg))
        tokens = self.renderer.completion_tokens(body.prompt)
        max_tokens = self.renderer.max_tokens(
            len(tokens), body.max_tokens, DEFAULT_COMPLETION_TOKENS
        )
        request_id = msg.request_id or new_id("gen")
        return GenerationRequest(
            request_id=request_id,
            prompt_token_ids=tuple(tokens),
            adapter=self._adapter(body.model),
            sampling=body.sampling(max_tokens),
            trace_id=msg.trace_id or request_id,
        )
