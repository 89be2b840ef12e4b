"""A refusal on the gRPC front door: its status code, details and, for load, the
`retry-after` trailer that HTTP's 429 carries as a header."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from cluster.request import GenerationRequest
from deploy.grpc_ingress import GrpcGeneration, GrpcRefused
from deploy.openai_protocol import RETRY_AFTER_S, APIError, bad_request, overloaded
from tetriserve.v1 import adapters_pb2, generate_pb2


class FakeContext:
    """The parts of Serve's gRPC context a refusal sets."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.trailers: list[tuple[str, str]] = []

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def set_trailing_metadata(self, trailers: list[tuple[str, str]]) -> None:
        self.trailers = trailers


class FakeIngress(GrpcGeneration):
    """An ingress whose request path refuses every request with `refusal`."""

    def __init__(self, refusal: APIError) -> None:
        self.refusal = refusal

    def _generation(self, msg: generate_pb2.GenerateRequest) -> tuple[GenerationRequest, str]:
        return GenerationRequest(request_id=msg.request_id, prompt_token_ids=(1, 2)), "base"

    async def _resolve(self, model: str) -> tuple[str | None, int]:
        return None, 0

    async def _load_lora(self, lora_name: str, lora_path: str) -> str:
        raise self.refusal

    async def _unload_lora(self, lora_name: str) -> str:
        raise self.refusal

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[Any]:
        raise self.refusal
        yield  # an async generator, as the real one is


def _refused(refusal: APIError) -> FakeContext:
    context = FakeContext()

    async def call() -> None:
        request = generate_pb2.GenerateRequest(request_id="r")
        async for _ in FakeIngress(refusal).Generate(request, context):  # type: ignore[arg-type]
            pass

    with pytest.raises(GrpcRefused):
        asyncio.run(call())
    return context


def test_a_refusal_for_load_carries_retry_after() -> None:
    context = _refused(overloaded("256 requests in flight"))
    assert context.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert context.details == "256 requests in flight"
    assert context.trailers == [("retry-after", str(RETRY_AFTER_S))]


def test_bad_input_is_invalid_argument_without_retry_after() -> None:
    context = _refused(bad_request("max_tokens: must be positive"))
    assert context.code is grpc.StatusCode.INVALID_ARGUMENT
    assert context.trailers == []


def test_a_refused_adapter_load_or_unload_ends_with_the_matching_code() -> None:
    async def load(ingress: FakeIngress, context: FakeContext) -> None:
        request = adapters_pb2.LoadLoraAdapterRequest(lora_name="x", lora_path="/elsewhere")
        await ingress.LoadLoraAdapter(request, context)  # type: ignore[arg-type]

    async def unload(ingress: FakeIngress, context: FakeContext) -> None:
        request = adapters_pb2.UnloadLoraAdapterRequest(lora_name="x")
        await ingress.UnloadLoraAdapter(request, context)  # type: ignore[arg-type]

    cases = [
        (load, bad_request("lora_path lies outside the adapter root"), "INVALID_ARGUMENT"),
        (
            unload,
            APIError(404, "The lora adapter 'x' cannot be found.", "NotFoundError"),
            "NOT_FOUND",
        ),
    ]
    for call, refusal, code in cases:
        context = FakeContext()
        with pytest.raises(GrpcRefused):
            asyncio.run(call(FakeIngress(refusal), context))
        assert context.code is grpc.StatusCode[code]
        assert context.details == refusal.message
