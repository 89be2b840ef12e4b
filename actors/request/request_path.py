"""The route a request takes behind the front door, as the ingress sees it.

`DisaggregatedPath`: GlobalScheduler.place → an instance's prefill streams the first token,
then the decode task (KV in memory nodes under a lease, decode instance chosen) → another
instance's decode streams the rest back. A greedy request's first token goes to the client
as soon as the prefill made it, before its lease is taken; the decode side computes the same
token again, and the path checks that it did before passing on the rest. When the
request ends, its true output length goes back to the prefill instance's length predictor.
A dead instance before the first token means another try on a fresh placement; after
tokens were sent it ends the stream with an error: never a hang, never silent wrong text.
`ColocatedPath`: one EngineInstance runs the whole request.

Both expose `generate(request) -> AsyncIterator[TokenDelta]`; errors come out as a final
delta with `finish_reason=ERROR` and `error` set, or as `Overloaded` before anything started.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from ray.exceptions import RayActorError, RayTaskError

from actors.scheduler.global_scheduler import Overloaded
from actors.wire import delta_from_wire, request_to_wire
from cluster.request import FinishReason, GenerationRequest, TokenDelta
from tetriserve.v1 import generate_pb2, scheduling_pb2

ATTEMPTS = 2


def _failed(request_id: str, message: str) -> TokenDelta:
    return TokenDelta(request_id, "", (), FinishReason.ERROR, error=message)


async def _next(call: Any) -> bytes:
    """The next message of a streaming actor call."""
    return await (await anext(call))


async def _stream(call: Any) -> AsyncIterator[TokenDelta]:
    async for ref in call:
        yield delta_from_wire(generate_pb2.GenerateResponse.FromString(await ref))


class ColocatedPath:
    def __init__(self, instance: Any) -> None:
        self.instance = instance

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta]:
        wire = request_to_wire(request).SerializeToString()
        call = self.instance.generate.options(num_returns="streaming").remote(wire)
        try:
            async for delta in _stream(call):
                yield delta
        except (RayActorError, RayTaskError) as exc:
            yield _failed(request.request_id, f"engine instance failed: {exc}")


class DisaggregatedPath:
    def __init__(self, scheduler: Any, instances: dict[str, Any]) -> None:
        self.scheduler = scheduler
        self.instances = instances

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta]:
        wire = request_to_wire(request)
        try:
            for attempt in range(ATTEMPTS):
                sent = 0
                try:
                    async for delta in self._attempt(wire):
                        sent += 1
                        yield delta
                    return
                except (RayActorError, RayTaskError) as exc:
                    if sent or attempt == ATTEMPTS - 1:
                        yield _failed(
                            request.request_id, f"serving instance failed: {_reason(exc)}"
                        )
                        return
        finally:
            self.scheduler.finished.remote(request.request_id)

    async def _attempt(self, wire: generate_pb2.GenerateRequest) -> AsyncIterator[TokenDelta]:
        try:
            decision_bytes = await self.scheduler.place.remote(wire.SerializeToString())
        except RayTaskError as exc:
            if isinstance(exc.cause, Overloaded):
                raise exc.cause from None
            raise
        decision = scheduling_pb2.DispatchDecision.FromString(decision_bytes)
        task = scheduling_pb2.PrefillTask(request=wire, decision=decision)
        prefill = self.instances[decision.prefill_instance]
        early = wire.sampling.temperature == 0.0  # greedy: the decode side repeats this token
        messages = prefill.prefill.options(num_returns="streaming").remote(task.SerializeToString())
        try:
            first = delta_from_wire(generate_pb2.GenerateResponse.FromString(await _next(messages)))
            if early or first.finished:
                yield first
            decode_task_bytes = await _next(messages)
        finally:
            self.scheduler.prefilled.remote(wire.request_id)
        decode_task = scheduling_pb2.DecodeTask.FromString(decode_task_bytes)
        if not decode_task.decision.decode_instance:
            self._observe(prefill, decode_task, first.completion_tokens)
            return
        decode = self.instances[decode_task.decision.decode_instance]
        call = decode.decode.options(num_returns="streaming").remote(decode_task_bytes)
        last, repeated = first, not early
        async for delta in _stream(call):
            last = delta
            if not repeated:
                repeated = True
                delta = _without_first_token(delta, first)
                if delta.finish_reason is FinishReason.ERROR:
                    yield delta
                    return
                if not delta.token_ids and delta.finish_reason is None:
                    continue
            yield delta
        if last.finish_reason not in (None, FinishReason.ERROR):
            self._observe(prefill, decode_task, last.completion_tokens)

    @staticmethod
    def _observe(prefill: Any, task: scheduling_pb2.DecodeTask, output_tokens: int) -> None:
        """The finished request's true output length, for the prefill's length predictor."""
        prefill.observe.remote(list(task.prompt_token_ids), output_tokens)


def _without_first_token(delta: TokenDelta, first: TokenDelta) -> TokenDelta:
    """The decode side's first delta minus the token the prefill already sent.

    The engine may have merged several steps into that delta; the prefill's first token and
    its text lead it when both engines agree (the same detokenizer state gives the same
    text), which is checked: a disagreement ends the request with an error, never wrong text.
    """
    if delta.finish_reason is FinishReason.ERROR:
        return delta
    if delta.token_ids[:1] != first.token_ids[:1] or not delta.text.startswith(first.text):
        return _failed(delta.request_id, "decode disagreed with the prefill's first token")
    return dataclasses.replace(
        delta, text=delta.text[len(first.text) :], token_ids=delta.token_ids[1:]
    )


def _reason(exc: Exception) -> str:
    cause = getattr(exc, "cause", None)
    return f"{type(cause or exc).__name__}: {cause or exc}"
