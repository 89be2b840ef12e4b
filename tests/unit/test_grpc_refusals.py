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
from tetriserve.v1 import generate_pb2


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

    def _generation(self, msg: generate_pb2.GenerateRequest) -> GenerationRequest:
        return GenerationRequest(request_id=msg.request_id, prompt_token_ids=(1, 2))

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
