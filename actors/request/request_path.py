"""The route a request takes behind the front door, run by the request's one owner.

`DisaggregatedPath.generate` owns a request from its placement to its last token, in the
ingress replica that took it: GlobalScheduler.place → the prefill instance's stream
(started; the first token, sampled by the prefill engine whatever the sampling mode, which
goes to the client at once; the DecodeTask with the lease) → the decode instance's stream,
which continues from the prompt and that first token. The request's state and every
decision about it live in `cluster.request_lifecycle.RequestLife`; this module feeds it
the streams' messages and carries out the actions it returns (dispatch, cancel a stream,
release a lease, report the end). `OutputText` turns the engines' token ids into the
client's text and ends the request at a stop string, wherever it falls.

A prefill instance that dies before any token was sent means another placement; a decode
instance that dies means another decode instance, which continues from the tokens already
made. Beyond the attempts, an instance's death ends the stream with an error: never a hang,
never wrong text.
`ColocatedPath`: one EngineInstance runs the whole request, with the same output rules.

Both expose `generate(request) -> AsyncIterator[TokenDelta]`; errors come out as a final
delta with `finish_reason=ERROR` and `error` set, or as `Overloaded` before anything started.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError, TaskCancelledError
from ray.serve._private.constants import SERVE_NAMESPACE

from actors.request.output_text import OutputText, load_tokenizer
from actors.scheduler.global_scheduler import NoInstanceAvailable, Overloaded
from actors.wire import delta_from_wire, request_to_wire
from cluster.request import FinishReason, GenerationRequest, TokenDelta
from cluster.request_lifecycle import (
    Action,
    CancelDecode,
    CancelPrefill,
    Dispatch,
    DispatchAgain,
    InstanceLost,
    LeftPrefill,
    PlaceAgain,
    ReleaseLease,
    Report,
    RequestLife,
)
from tetriserve.v1 import generate_pb2, kv_pb2, scheduling_pb2

ATTEMPTS = 2
PLACE_WAIT_S = 120.0
PLACE_POLL_S = 0.5
log = logging.getLogger(__name__)


def _failed(request_id: str, message: str) -> TokenDelta:
    return TokenDelta(request_id, "", (), FinishReason.ERROR, error=message)


def _reason(exc: Exception) -> str:
    """What the client is told of a fault: its kind and the first line of its message.

    Ray's errors go on, after their first line, with actor ids, process ids and node
    addresses: those stay in this process's log, which gets the whole text."""
    cause = getattr(exc, "cause", None) or exc
    log.warning("request path fault: %s: %s", type(cause).__name__, cause)
    first_line = next((line for line in str(cause).splitlines() if line.strip()), "")
    return f"{type(cause).__name__}: {first_line.strip()}"


async def _messages(call: Any) -> AsyncIterator[bytes]:
    with _cancelled_with_the_request():
        async for ref in call:
            yield await ref


@contextlib.contextmanager
def _cancelled_with_the_request() -> Iterator[None]:
    """When the client goes away, Ray Serve cancels the request's task, and Ray cancels the
    calls that task made with it. Their TaskCancelledError is this request being cancelled
    (asyncio.CancelledError, and the owner lets go of it), not an instance dying, which
    would have it placed or dispatched again and its lease left to expire."""
    try:
        yield
    except TaskCancelledError as exc:
        raise asyncio.CancelledError from exc


class ColocatedPath:
    def __init__(self, instance: Any, model_dir: str) -> None:
        self.instance = instance
        self.model_dir = model_dir

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta]:
        output = OutputText(load_tokenizer(self.model_dir), request)
        wire = request_to_wire(request).SerializeToString()
        call = self.instance.generate.options(num_returns="streaming").remote(wire)
        engine_done = False
        try:
            async for message in _messages(call):
                step = delta_from_wire(generate_pb2.GenerateResponse.FromString(message))
                engine_done = step.finished
                delta = output.add(step)
                yield delta
                if delta.finished:
                    break
        except RayError as exc:  # the instance died, or its stream broke
            engine_done = True
            yield _failed(request.request_id, f"engine instance failed: {_reason(exc)}")
        finally:
            if not engine_done:  # a stop string, or the client went away
                ray.cancel(call)


class _Run:
    """One request under way: its life, its output, its open streaming calls."""

    def __init__(self, request: GenerationRequest, output: OutputText) -> None:
        self.request = request
        self.wire = request_to_wire(request)
        self.life = RequestLife(request.request_id, max_attempts=ATTEMPTS)
        self.output = output
        # Instance -> its open streaming call, per stage: one instance may run both stages
        # of a request (the survivor, while no instance of the other role answers).
        self.prefill_calls: dict[str, Any] = {}
        self.decode_calls: dict[str, Any] = {}
        self.task: scheduling_pb2.DecodeTask | None = None
        self.made: list[int] = []  # the engines' output token ids so far
        # The scheduler's placement, with the request's KV capability.
        self.placement = scheduling_pb2.DispatchDecision()


class DisaggregatedPath:
    def __init__(
        self,
        scheduler: Any,
        instances: dict[str, Any],
        model_dir: str,
        infrastructure: dict[str, Any] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.instances = instances
        self.model_dir = model_dir
        # The memory nodes', switch's and adapter store's handles, held here as well as by
        # the scheduler: Ray ends an actor once no handle to it is left, and the scheduler
        # may be restarting.
        self.infrastructure = dict(infrastructure or {})

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta]:
        run = _Run(request, OutputText(load_tokenizer(self.model_dir), request))
        try:
            await self._place(run)  # Overloaded goes to the front door: nothing started
            async for delta in self._prefill(run):
                yield delta
            if run.life.decode_instance is not None and not run.life.finished:
                async for delta in self._decode(run):
                    yield delta
            if run.life.error:
                yield _failed(request.request_id, run.life.error)
        except Overloaded:
            raise
        except Exception as exc:  # a fault of the path itself: logged, and the client told
            log.exception("request %s failed in stage %s", request.request_id, run.life.stage)
            await self._carry_out(run, run.life.fail(f"internal error: {_reason(exc)}"))
            yield _failed(request.request_id, run.life.error)
        finally:
            await self._carry_out(run, run.life.close())

    async def _place(self, run: _Run) -> None:
        """The request's prefill instance, from the scheduler. While none is reachable (Ray
        is starting the only one again), the request waits for one, up to PLACE_WAIT_S,
        rather than being refused; a full cluster refuses it at once (Overloaded)."""
        deadline = time.monotonic() + PLACE_WAIT_S
        while True:
            try:
                with _cancelled_with_the_request():
                    decision = await self.scheduler.place.remote(
                        run.wire.SerializeToString(), _this_actor()
                    )
                break
            except RayTaskError as exc:
                if not isinstance(exc.cause, Overloaded):
                    raise
                if not isinstance(exc.cause, NoInstanceAvailable) or time.monotonic() > deadline:
                    raise exc.cause from None
            await asyncio.sleep(PLACE_POLL_S)
        run.placement = scheduling_pb2.DispatchDecision.FromString(decision)
        chosen = run.placement.prefill_instance
        await self._carry_out(run, run.life.placed(chosen))
        task = scheduling_pb2.PrefillTask(request=run.wire, decision=run.placement)
        prefill = self.instances[chosen].prefill.options(num_returns="streaming")
        run.prefill_calls[chosen] = prefill.remote(task.SerializeToString())

    async def _prefill(self, run: _Run) -> AsyncIterator[TokenDelta]:
        """The prefill stream, placed again while its instance dies before any token."""
        while run.life.prefill_open:
            instance = run.life.prefill_instance
            assert instance is not None
            try:
                async for message in _messages(run.prefill_calls[instance]):
                    delta = await self._on_prefill_event(run, message)
                    if delta is not None:
                        yield delta
                run.prefill_calls.pop(instance, None)
                if run.life.prefill_open:
                    await self._carry_out(run, run.life.fail("the prefill stream ended early"))
            except RayError as exc:  # the instance died, or its stream broke
                run.prefill_calls.pop(instance, None)
                await self._lost(run, instance, f"prefill failed: {_reason(exc)}")

    async def _on_prefill_event(self, run: _Run, message: bytes) -> TokenDelta | None:
        event = scheduling_pb2.PrefillEvent.FromString(message)
        kind = event.WhichOneof("event")
        if kind == "started":
            await self._carry_out(run, run.life.prefill_started())
            return None
        if kind == "first_token":
            step = delta_from_wire(event.first_token)
            run.made.extend(step.token_ids)
            delta = run.output.add(step)
            await self._carry_out(run, run.life.first_token(len(delta.token_ids)))
            if run.output.finished:
                await self._carry_out(run, run.life.finish(delta.finish_reason))
            return delta
        run.task = event.decode_task
        decision = run.task.decision
        await self._carry_out(
            run, run.life.decode_task(run.task.lease.lease_id, decision.decode_instance)
        )
        return None

    async def _decode(self, run: _Run) -> AsyncIterator[TokenDelta]:
        """The decode stream, dispatched again while its instance dies under it."""
        while run.life.decode_open:
            instance = run.life.decode_instance
            assert instance is not None
            try:
                async for delta in self._decode_stream(run, run.decode_calls[instance]):
                    yield delta
                return
            except RayError as exc:  # the instance died, or its stream broke
                run.decode_calls.pop(instance, None)
                await self._lost(run, instance, f"decode failed: {_reason(exc)}")

    async def _lost(self, run: _Run, instance: str, error: str) -> None:
        """`instance` died under the request, and its call with it; the life decides the
        rest (placed again, dispatched again, or failed)."""
        await self._carry_out(run, run.life.instance_lost(instance, error))

    async def _decode_stream(self, run: _Run, call: Any) -> AsyncIterator[TokenDelta]:
        async for message in _messages(call):
            step = delta_from_wire(generate_pb2.GenerateResponse.FromString(message))
            if step.finished:
                await self._carry_out(run, run.life.decode_ended())
            if step.error:
                await self._carry_out(run, run.life.fail(step.error))
                return
            run.made.extend(step.token_ids)
            delta = run.output.add(step)
            await self._carry_out(run, run.life.tokens(len(delta.token_ids)))
            if run.output.finished:
                await self._carry_out(run, run.life.finish(delta.finish_reason))
            if delta.token_ids or delta.finished:
                yield delta
            if delta.finished:
                return
        await self._carry_out(run, run.life.decode_ended())
        await self._carry_out(run, run.life.fail("the decode stream ended before its end"))

    async def _dispatch_again(self, run: _Run) -> None:
        """Another decode instance continues from every token made so far. It has no lease
        (the dead instance may have released it): it recomputes the KV."""
        chosen = await self.scheduler.decode_instance.remote()
        decision = scheduling_pb2.DispatchDecision()
        decision.CopyFrom(run.placement)
        decision.decode_instance = chosen
        run.task = scheduling_pb2.DecodeTask(
            request=run.wire,
            decision=decision,
            lease=kv_pb2.KVLease(request_id=run.request.request_id),
            prompt_token_ids=run.request.prompt_token_ids,
            prefill_output_token_ids=run.made,
        )
        await self._carry_out(run, run.life.dispatched_again(chosen or None))

    async def _carry_out(self, run: _Run, actions: list[Action]) -> None:
        """The I/O behind the life's decisions."""
        for action in actions:
            match action:
                case Dispatch(instance):
                    assert run.task is not None
                    decode = self.instances[instance].decode.options(num_returns="streaming")
                    run.decode_calls[instance] = decode.remote(run.task.SerializeToString())
                case CancelPrefill(instance):
                    # The stream may already hold the DecodeTask, with a lease that only
                    # its prefill instance can still give back.
                    _cancel(run.prefill_calls.pop(instance, None))
                    _detached(self.instances[instance].abort_prefill, run.request.request_id)
                case CancelDecode(instance):
                    _cancel(run.decode_calls.pop(instance, None))
                case ReleaseLease(lease_id):
                    prefill = run.life.prefill_instance
                    assert run.task is not None  # the lease came in its DecodeTask
                    if prefill is not None and run.task.lease.pages:
                        tenant = run.task.lease.pages[0].tenant
                        _detached(self.instances[prefill].release_lease, lease_id, tenant)
                case Report(reason, tokens, prefill):
                    _detached(self.scheduler.finished, run.request.request_id)
                    ran_to_end = reason in (FinishReason.LENGTH, FinishReason.STOP)
                    if ran_to_end and prefill is not None:
                        prompt = list(run.request.prompt_token_ids)
                        _detached(self.instances[prefill].observe, prompt, tokens)
                case LeftPrefill():
                    _detached(self.scheduler.prefilled, run.request.request_id)
                case InstanceLost(instance):
                    # Awaited: the scheduler may run an owner's calls in any order, and the
                    # placement or dispatch made next must not go to the dead instance.
                    await self.scheduler.instance_lost.remote(instance)
                case PlaceAgain():
                    await self._place(run)
                case DispatchAgain():
                    await self._dispatch_again(run)


@functools.cache
def _this_actor() -> str:
    """The ingress replica this path runs in, as the scheduler finds it ("namespace/name"):
    the owner of the requests it places. Ray Serve names its replicas in its own namespace.
    "" outside a named actor. Asked once per process, not once per request."""
    context = ray.get_runtime_context()
    name = context.get_actor_name() if context.get_actor_id() is not None else None
    return f"{SERVE_NAMESPACE}/{name}" if name else ""


def _detached(method: Any, *args: Any) -> None:
    """`method.remote(*args)`, sent from a worker thread rather than from the request's own
    task: a client gone makes Ray Serve cancel that task with every call it sends, the
    ones that give back what the request held included."""
    asyncio.get_running_loop().run_in_executor(None, lambda: method.remote(*args))


def _cancel(call: Any) -> None:
    if call is not None:
        ray.cancel(call)
