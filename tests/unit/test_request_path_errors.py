"""What a client is told of a fault of the request path: never Ray's internals. A call that
Ray cancelled along with the request is the request's cancellation, not a fault."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from ray.exceptions import TaskCancelledError

from actors.request.request_path import _messages, _reason


class FakeActorDiedError(Exception):
    """Shaped like Ray's: a first line, then the actor's identity and address."""

    def __init__(self) -> None:
        super().__init__(
            "The actor died unexpectedly before finishing this task.\n"
            "\tclass_name: ServingInstance\n\tactor_id: 4f1c0a\n\tpid: 31337\n"
            "\tname: decode-0\n\tip: 10.1.2.3"
        )


class FakeTaskError(Exception):
    """Ray wraps a remote exception and keeps it as `cause`."""

    def __init__(self, cause: Exception) -> None:
        super().__init__("wrapped")
        self.cause = cause


def test_the_client_sees_the_kind_and_first_line_only() -> None:
    told = _reason(FakeActorDiedError())
    assert told == "FakeActorDiedError: The actor died unexpectedly before finishing this task."
    for internal in ("4f1c0a", "31337", "10.1.2.3", "decode-0"):
        assert internal not in told


def test_a_wrapped_fault_is_told_by_its_cause() -> None:
    assert _reason(FakeTaskError(ValueError("bad page\nat 0xdead"))) == "ValueError: bad page"


class FakeCancelledStream:
    """A streaming call that Ray cancelled after one message, as it cancels the calls of a
    request whose client went away."""

    async def __aiter__(self) -> AsyncIterator[asyncio.Future]:
        done = asyncio.get_running_loop().create_future()
        done.set_result(b"first")
        yield done
        cancelled = asyncio.get_running_loop().create_future()
        cancelled.set_exception(TaskCancelledError())
        yield cancelled


def test_a_call_cancelled_with_the_request_cancels_the_request() -> None:
    async def read() -> list[bytes]:
        seen = []
        with pytest.raises(asyncio.CancelledError):
            async for message in _messages(FakeCancelledStream()):
                seen.append(message)
        return seen

    assert asyncio.run(read()) == [b"first"]
