"""The front door: an OpenAI-compatible HTTP API served by Ray Serve.

Client → this ingress (validate, tokenize, resolve the adapter: deploy/lora_admin.py) → the
request path (actors/request/request_path.py: scheduler, prefill, decode) → tokens back as
JSON or server-sent events. It also takes vLLM's /v1/load_lora_adapter and
/v1/unload_lora_adapter. Bad input is answered here with a 4xx and an OpenAI-style error
body (unknown routes and methods too); nothing malformed travels further.
Bodies are read under a size limit (deploy/request_body.py), and tokenizing runs in a worker
thread, so that one large request never holds the event loop every other request needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from ray import serve
from starlette.exceptions import HTTPException

from actors import cpu_priority
from actors.metrics import API_ERRORS, start_ingress_series
from actors.model_shipping import ShippedModel, local_dir
from actors.request.request_timer import RequestTimer
from actors.scheduler.global_scheduler import Overloaded
from cluster.request import GenerationRequest, TokenDelta
from deploy.grpc_ingress import GrpcGeneration
from deploy.lora_admin import LoraAdmin
from deploy.openai_protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    LoadLoraAdapterBody,
    UnloadLoraAdapterBody,
    chat_body,
    completion_body,
    new_id,
    overloaded,
    usage,
    validated,
)
from deploy.prompt_renderer import DEFAULT_COMPLETION_TOKENS, PromptRenderer
from deploy.request_body import parse_object, read_limited

app = FastAPI(title="tetriserve")
BodyBuilder = Callable[[str, str, str, Any, dict, bool], dict]


@app.exception_handler(APIError)
async def _api_error(_: Request, exc: APIError) -> JSONResponse:
    API_ERRORS.labels(str(exc.status)).inc()
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


@app.exception_handler(HTTPException)
async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    """The framework's own refusals (no such route, method not allowed) in OpenAI's shape."""
    kind = {404: "NotFoundError", 405: "MethodNotAllowedError"}.get(exc.status_code, "APIError")
    error = APIError(exc.status_code, str(exc.detail), kind)
    API_ERRORS.labels(str(exc.status_code)).inc()
    return JSONResponse(error.body(), status_code=exc.status_code, headers=exc.headers)


async def _chain(first: TokenDelta, rest: AsyncIterator[TokenDelta]) -> AsyncIterator[TokenDelta]:
    yield first
    async for delta in rest:
        yield delta


_CLOSING: set[asyncio.Future] = set()


def _close_when_served(stream: AsyncGenerator) -> None:
    """Closes `stream` once the task serving its HTTP request ends, however it ends. A
    client gone just before its streamed response began leaves the stream suspended, and
    its request's leases and counts held, until the garbage collector finds it."""

    def close(_: asyncio.Task) -> None:
        closing = asyncio.ensure_future(stream.aclose())
        _CLOSING.add(closing)  # held until done: the loop keeps only a weak reference
        closing.add_done_callback(_CLOSING.discard)

    task = asyncio.current_task()
    if task is not None:
        task.add_done_callback(close)


def _sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


@serve.deployment(name="OpenAIIngress", max_ongoing_requests=256)
@serve.ingress(app)
class OpenAIIngress(GrpcGeneration, LoraAdmin):
    def __init__(
        self,
        path: Any,
        model: ShippedModel,
        max_model_len: int,
        store: Any,
        max_body_bytes: int,
    ) -> None:
        """`store`: the LoRAAdapterStore's actor handle."""
        cpu_priority.yield_to_engines()
        start_ingress_series()
        self.path = path
        self.store = store
        self.renderer = PromptRenderer(local_dir(model), max_model_len)
        self.max_body_bytes = max_body_bytes

    async def _parse(self, request: Request, schema: type[BaseModel]) -> Any:
        raw = await read_limited(request.headers, request.stream(), self.max_body_bytes)
        return validated(schema, parse_object(raw))

    @app.get("/v1/models")
    async def models(self) -> dict:
        names = await self._model_names()
        cards = [{"id": n, "object": "model", "owned_by": "tetriserve", "root": n} for n in names]
        return {"object": "list", "data": cards}

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(self, request: Request) -> PlainTextResponse:
        body: LoadLoraAdapterBody = await self._parse(request, LoadLoraAdapterBody)
        return PlainTextResponse(await self._load_lora(body.lora_name, body.lora_path))

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(self, request: Request) -> PlainTextResponse:
        body: UnloadLoraAdapterBody = await self._parse(request, UnloadLoraAdapterBody)
        return PlainTextResponse(await self._unload_lora(body.lora_name))

    @app.get("/metrics")
    async def metrics(self) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health(self) -> dict:
        return {"status": "ok"}

    @app.post("/v1/completions")
    async def completions(self, request: Request):
        body: CompletionRequest = await self._parse(request, CompletionRequest)
        tokens = await asyncio.to_thread(self.renderer.completion_tokens, body.prompt)
        max_tokens = self.renderer.max_tokens(
            len(tokens), body.max_tokens, DEFAULT_COMPLETION_TOKENS
        )
        return await self._respond(body, tokens, max_tokens, "cmpl", completion_body)

    @app.post("/v1/chat/completions")
    async def chat_completions(self, request: Request):
        body: ChatCompletionRequest = await self._parse(request, ChatCompletionRequest)
        tokens = await asyncio.to_thread(self.renderer.chat_tokens, body.messages)
        max_tokens = self.renderer.max_tokens(len(tokens), body.requested_max_tokens, None)
        return await self._respond(body, tokens, max_tokens, "chatcmpl", chat_body)

    async def _respond(self, body, tokens: list[int], max_tokens: int, prefix: str, build):
        adapter, version = await self._resolve(body.model)
        request = GenerationRequest(
            request_id=new_id(prefix),
            prompt_token_ids=tuple(tokens),
            adapter=adapter,
            adapter_version=version,
            sampling=body.sampling(max_tokens),
        )
        deltas = self._stream(request)
        _close_when_served(deltas)
        # The first step arrives before any byte is sent, so that a refusal (429) or a
        # failure before the first token is answered with its own status code.
        first = await anext(deltas)
        if body.stream:
            events = self._events(request, body, _chain(first, deltas), build)
            return StreamingResponse(events, media_type="text/event-stream")
        text, last = [], None
        async for delta in _chain(first, deltas):
            text.append(delta.text)
            last = delta
        use = usage(len(tokens), last.completion_tokens if last else 0)
        reason = last.finish_reason if last else None
        return build(request.request_id, body.model, "".join(text), reason, use, False)

    async def _events(
        self, request: GenerationRequest, body, deltas: AsyncIterator[TokenDelta], build
    ) -> AsyncIterator[str]:
        try:
            async for delta in deltas:
                yield _sse(
                    build(request.request_id, body.model, delta.text, delta.finish_reason, {}, True)
                )
                if delta.finished and body.include_usage:
                    use = usage(len(request.prompt_token_ids), delta.completion_tokens)
                    chunk = build(request.request_id, body.model, "", None, use, True)
                    chunk["choices"] = []
                    yield _sse(chunk)
        except APIError as exc:
            yield _sse(exc.body())
        yield _sse("[DONE]")

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[TokenDelta]:
        """The request path's token stream; an error it reports becomes an APIError."""
        timer = RequestTimer(request.model_name, len(request.prompt_token_ids))
        try:
            async with contextlib.aclosing(self.path.generate(request)) as steps:
                async for delta in steps:
                    timer.step(delta)
                    if delta.error:
                        raise APIError(500, delta.error, "InternalServerError")
                    yield delta
        except Overloaded as exc:
            timer.refused()
            raise overloaded(str(exc)) from None
