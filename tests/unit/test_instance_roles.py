"""The prefill and decode roles' own scheduling, around a fake engine (no vLLM, no Ray).

Prefill: requests enter the engine in the queue policy's order, at most two chunks of
prompt tokens at a time; each takes its pages' lease up front and gives it back when it
ends there. Decode: admission holds a request whose predicted KV does not fit until a
running one finishes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from actors.instances.decode_instance import DecodeInstance
from actors.instances.prefill_instance import PrefillInstance
from actors.kv.kv_client import KVTransferError
from actors.wire import handle_to_wire, request_to_wire
from cluster.config import SchedulingConfig
from cluster.kv_pages import PageHandle, PageLayout
from cluster.placement import InstanceLoad
from cluster.request import FinishReason, GenerationRequest, SamplingSpec, TokenDelta
from tetriserve.v1 import generate_pb2, kv_pb2, scheduling_pb2


class FakeEngine:
    def __init__(self, capacity_tokens: int) -> None:
        self.capacity = capacity_tokens

    def kv_capacity_tokens(self) -> int:
        return self.capacity

    def tokenize(self, text: str) -> list[int]:
        return [len(word) * 100 + ord(word[0]) for word in text.split()]


class FakeServingEngine:
    """Records the order requests reach the engine; each waits for its gate, if it has one."""

    def __init__(self, capacity_tokens: int = 10_000) -> None:
        self.instance_id = "fake"
        self.engine = FakeEngine(capacity_tokens)
        self.entered: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.running = 0

    async def generate(
        self, request: GenerationRequest, _params: dict | None = None, _prior_output: int = 0
    ):
        self.entered.append(request.request_id)
        self.running += 1
        try:
            gate = self.gates.get(request.request_id)
            if gate is not None:
                await gate.wait()
            yield TokenDelta(request.request_id, "x", (7,), FinishReason.LENGTH)
        finally:
            self.running -= 1

    def load(self, waiting_outside: int = 0) -> InstanceLoad:
        return InstanceLoad(self.instance_id, queued=waiting_outside, running=self.running)


class FakeKVClient:
    """Hands out leases of made-up pages (or fails, when the memory nodes are `down`);
    keeps the leases it gave and the ones given back."""

    def __init__(self, down: bool = False, lease_s: float = 30.0) -> None:
        self.down = down
        self.lease_s = lease_s
        self.leases: dict[str, kv_pb2.KVLease] = {}
        self.released: list[str] = []
        self.presented: dict[int, str] = {}

    def present(self, tenant: int, capability: str) -> None:
        self.presented[tenant] = capability

    def alloc_pages(
        self, tenant: int, count: int, length: int, lease_id: str, _ttl_s: float
    ) -> kv_pb2.KVLease:
        if self.down:
            raise KVTransferError("UNAVAILABLE", "no memory node answers")
        pages = [PageHandle(None, "memory-0", tenant, 4096 * i, length) for i in range(count)]
        expires = time.time() + self.lease_s
        lease = kv_pb2.KVLease(
            lease_id=lease_id, nonce=7, pages=map(handle_to_wire, pages), expires_at_unix_s=expires
        )
        self.leases[lease_id] = lease
        return lease

    def release_lease(self, lease_id: str, tenant: int) -> None:
        assert tenant in self.presented, "a lease is released with its tenant's capability"
        self.released.append(lease_id)


LAYOUT = PageLayout(num_layers=1, num_kv_heads=1, head_dim=8, block_size=32, dtype_bytes=4)


def _request(request_id: str, prompt_tokens: int, max_tokens: int = 1) -> GenerationRequest:
    return GenerationRequest(
        request_id=request_id,
        prompt_token_ids=tuple(range(3, 3 + prompt_tokens)),
        sampling=SamplingSpec(max_tokens=max_tokens),
    )


def _prefill_task(request: GenerationRequest) -> bytes:
    return scheduling_pb2.PrefillTask(request=request_to_wire(request)).SerializeToString()


def _prefill_role(
    serving: FakeServingEngine,
    policy: str = "fcfs",
    train: Path | None = None,
    kv: FakeKVClient | None = None,
) -> PrefillInstance:
    scheduling = SchedulingConfig(prefill_policy=policy, length_train_file=train)
    kv = kv or FakeKVClient()
    return PrefillInstance(serving, kv, "model", LAYOUT, scheduling, chunk_tokens=64)


def test_prefill_role_trains_its_length_predictor_from_a_sharegpt_file(tmp_path: Path) -> None:
    conversations = []
    for i in range(40):
        short = i % 2 == 0
        question = "define word briefly" if short else "write long story please about dragons"
        answer = "yes " * (5 if short else 150)
        conversations.append(
            {"conversations": [{"from": "human", "value": f"{question} {i}"},
                               {"from": "gpt", "value": answer}]}
        )  # fmt: skip
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(conversations))
    role = _prefill_role(FakeServingEngine(), train=path)
    assert role.predictor.trained
    short = role.predictor.predict(role.serving.engine.tokenize("define word briefly 99"), 512)
    long = role.predictor.predict(role.serving.engine.tokenize("write long story please"), 512)
    assert (short.bucket, long.bucket) == (0, 4)  # 5 and 150 tokens in buckets of 32


def _events(messages: list[bytes]) -> list[scheduling_pb2.PrefillEvent]:
    return [scheduling_pb2.PrefillEvent.FromString(message) for message in messages]


def test_prefill_streams_its_first_token_then_the_lease_it_took_up_front() -> None:
    async def scenario() -> None:
        kv = FakeKVClient()
        role = _prefill_role(FakeServingEngine(), kv=kv)
        role.decode_loads = {"decode-0": InstanceLoad("decode-0", free_kv_tokens=10_000)}
        stream = role.prefill(_prefill_task(_request("r", 40, max_tokens=4)))
        started = scheduling_pb2.PrefillEvent.FromString(await anext(stream))
        assert started.WhichOneof("event") == "started"
        assert len(kv.leases) == 1  # taken while the request waited its turn
        first = scheduling_pb2.PrefillEvent.FromString(await anext(stream)).first_token
        unfinished = generate_pb2.FINISH_REASON_UNSPECIFIED
        assert (list(first.token_ids), first.finish_reason) == ([7], unfinished)
        task = scheduling_pb2.PrefillEvent.FromString(await anext(stream)).decode_task
        assert task.decision.decode_instance == "decode-0"
        assert list(task.prompt_token_ids) == list(range(3, 43))
        assert list(task.prefill_output_token_ids) == [7]  # the decode continues from it
        # The KV of all 40 prompt tokens: two 32-token pages, written under the lease.
        (lease_id,) = kv.leases
        assert (task.lease.lease_id, len(task.lease.pages), task.lease.num_tokens) == (
            lease_id,
            2,
            40,
        )
        assert kv.released == []  # the owner holds it now

    asyncio.run(scenario())


def test_without_memory_nodes_the_decode_task_has_no_lease_and_recomputes() -> None:
    async def scenario() -> None:
        role = _prefill_role(FakeServingEngine(), kv=FakeKVClient(down=True))
        role.decode_loads = {"decode-0": InstanceLoad("decode-0", free_kv_tokens=10_000)}
        messages = [m async for m in role.prefill(_prefill_task(_request("r", 70, 4)))]
        task = _events(messages)[-1].decode_task
        assert (task.lease.lease_id, len(task.lease.pages), task.lease.num_tokens) == ("", 0, 0)
        assert task.decision.decode_instance == "decode-0"

    asyncio.run(scenario())


def test_prefill_that_is_the_whole_answer_gives_its_lease_back() -> None:
    async def scenario() -> None:
        kv = FakeKVClient()
        role = _prefill_role(FakeServingEngine(), kv=kv)
        messages = [m async for m in role.prefill(_prefill_task(_request("r", 40, 1)))]
        _started, first, task = _events(messages)
        assert first.first_token.finish_reason == generate_pb2.FINISH_REASON_LENGTH
        assert not task.decode_task.decision.decode_instance
        assert not task.decode_task.lease.lease_id
        await _eventually(lambda: kv.released == list(kv.leases))

    asyncio.run(scenario())


def test_a_prefill_cancelled_in_the_queue_gives_its_lease_back() -> None:
    async def scenario() -> None:
        serving, kv = FakeServingEngine(), FakeKVClient()
        role = _prefill_role(serving, kv=kv)
        serving.gates["long"] = asyncio.Event()
        long = asyncio.create_task(_drain(role.prefill(_prefill_task(_request("long", 200)))))
        waiting = asyncio.create_task(_drain(role.prefill(_prefill_task(_request("w", 10)))))
        await asyncio.sleep(0.05)
        assert role.load().queued == 1
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert role.load().queued == 0
        await _eventually(lambda: len(kv.released) == 1)
        serving.gates["long"].set()
        await long

    asyncio.run(scenario())


def test_prefill_releases_queued_requests_in_policy_order() -> None:
    async def scenario() -> list[str]:
        serving = FakeServingEngine()
        role = _prefill_role(serving, "sjf")
        serving.gates["long"] = asyncio.Event()
        long_task = asyncio.create_task(_drain(role.prefill(_prefill_task(_request("long", 200)))))
        await asyncio.sleep(0.01)  # "long" fills the engine's two chunks
        others = [
            asyncio.create_task(_drain(role.prefill(_prefill_task(_request(name, size)))))
            for name, size in (("fifty", 50), ("ten", 10), ("thirty", 30))
        ]
        await asyncio.sleep(0.01)
        assert serving.entered == ["long"]
        assert role.load().queued == 3
        serving.gates["long"].set()
        await asyncio.gather(long_task, *others)
        return serving.entered

    assert asyncio.run(scenario()) == ["long", "ten", "thirty", "fifty"]


def test_prefill_under_fcfs_keeps_arrival_order() -> None:
    async def scenario() -> list[str]:
        serving = FakeServingEngine()
        role = _prefill_role(serving, "fcfs")
        serving.gates["long"] = asyncio.Event()
        tasks = [asyncio.create_task(_drain(role.prefill(_prefill_task(_request("long", 200)))))]
        await asyncio.sleep(0.01)
        for name, size in (("fifty", 50), ("ten", 10)):
            tasks.append(
                asyncio.create_task(_drain(role.prefill(_prefill_task(_request(name, size)))))
            )
        await asyncio.sleep(0.01)
        serving.gates["long"].set()
        await asyncio.gather(*tasks)
        return serving.entered

    assert asyncio.run(scenario()) == ["long", "fifty", "ten"]


def _decode_task(request_id: str, prompt_tokens: int, predicted: int) -> bytes:
    request = _request(request_id, prompt_tokens, max_tokens=predicted)
    return scheduling_pb2.DecodeTask(
        request=request_to_wire(request),
        decision=scheduling_pb2.DispatchDecision(predicted_decode_tokens=predicted),
        prompt_token_ids=list(request.prompt_token_ids),
    ).SerializeToString()


async def _drain(stream: AsyncIterator[bytes]) -> int:
    return len([message async for message in stream])


async def _eventually(check: Callable[[], bool], within_s: float = 5.0) -> None:
    """Leases go back from a worker thread: waits until `check` holds, at most `within_s`."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not within the time allowed"
        await asyncio.sleep(0.01)


def _decoding_role(kv: FakeKVClient) -> PrefillInstance:
    role = _prefill_role(FakeServingEngine(), kv=kv)
    role.decode_loads = {"decode-0": InstanceLoad("decode-0", free_kv_tokens=10_000)}
    return role


def test_a_lease_sent_to_an_owner_that_let_the_request_go_unread_goes_back() -> None:
    async def scenario() -> None:
        kv = FakeKVClient()
        role = _decoding_role(kv)
        messages = [m async for m in role.prefill(_prefill_task(_request("r", 40, 4)))]
        (lease_id,) = kv.leases
        assert _events(messages)[-1].decode_task.lease.lease_id == lease_id
        role.abort("r")  # the owner cancelled the stream before reading its last message
        await _eventually(lambda: kv.released == [lease_id])
        role.abort("r")  # once only
        await asyncio.sleep(0.05)
        assert kv.released == [lease_id]

    asyncio.run(scenario())


def test_a_request_let_go_before_its_handoff_is_not_handed_over() -> None:
    async def scenario() -> None:
        kv = FakeKVClient()
        role = _decoding_role(kv)
        stream = role.prefill(_prefill_task(_request("r", 40, 4)))
        await anext(stream)  # started: its lease is taken
        role.abort("r")  # the owner let go while the first step ran
        task = _events([m async for m in stream])[-1].decode_task
        assert not task.lease.lease_id and not task.decision.decode_instance
        await _eventually(lambda: kv.released == list(kv.leases))

    asyncio.run(scenario())


def test_a_lease_of_a_stream_left_unread_goes_back_as_soon_as_the_owner_lets_go() -> None:
    async def scenario() -> None:
        kv = FakeKVClient()
        role = _decoding_role(kv)
        stream = role.prefill(_prefill_task(_request("r", 40, 4)))
        await anext(stream)  # started: its lease is taken; nobody reads the stream again
        role.abort("r")
        await _eventually(lambda: len(kv.leases) == 1 and kv.released == list(kv.leases))
        await stream.aclose()  # collected at last: nothing goes back twice
        await asyncio.sleep(0.05)
        assert kv.released == list(kv.leases)

    asyncio.run(scenario())


def test_decode_admission_holds_what_does_not_fit_until_memory_frees() -> None:
    async def scenario() -> None:
        serving = FakeServingEngine(capacity_tokens=100)
        role = DecodeInstance(
            serving, FakeKVClient(), "model", SchedulingConfig(admission="reserve_static")
        )
        serving.gates["big"] = asyncio.Event()
        big = asyncio.create_task(_drain(role.decode(_decode_task("big", 60, 30))))
        await asyncio.sleep(0.01)
        small = asyncio.create_task(_drain(role.decode(_decode_task("small", 20, 30))))
        await asyncio.sleep(0.01)
        assert serving.entered == ["big"]  # 20 + 30 predicted do not fit in the 40 left
        load = role.load()
        assert (load.queued, load.free_kv_tokens) == (1, 40)
        serving.gates["big"].set()
        assert await asyncio.gather(big, small) == [1, 1]
        assert serving.entered == ["big", "small"]
        assert role.load().free_kv_tokens == 100

    asyncio.run(scenario())


@pytest.mark.parametrize("interval_s", [0.0, 0.02])  # 0: what is already waiting goes together
def test_decode_stream_coalesces_steps_but_sends_the_first_alone(interval_s: float) -> None:
    from actors.instances.decode_instance import coalesce

    resume = asyncio.Event()

    def step(token: int, finish: FinishReason | None = None) -> TokenDelta:
        return TokenDelta("r", f"<{token}>", (token,), finish, completion_tokens=token)

    async def steps() -> AsyncIterator[TokenDelta]:
        for token in range(1, 6):
            yield step(token)
        await resume.wait()  # the engine pauses: what came so far goes out as one message
        yield step(6)
        yield step(7, FinishReason.LENGTH)

    async def scenario() -> list[TokenDelta]:
        sent = []
        async for delta in coalesce(steps(), interval_s=lambda: interval_s):
            sent.append(delta)
            if len(sent) == 2:
                resume.set()
        return sent

    sent = asyncio.run(scenario())
    assert [d.token_ids for d in sent] == [(1,), (2, 3, 4, 5), (6, 7)]
    assert [d.text for d in sent] == ["<1>", "<2><3><4><5>", "<6><7>"]
    assert [d.completion_tokens for d in sent] == [1, 5, 7]
    assert [d.finish_reason for d in sent] == [None, None, FinishReason.LENGTH]


def test_decode_streams_share_a_message_budget_up_to_the_longest_interval() -> None:
    scheduling = SchedulingConfig(stream_interval_ms=100, stream_messages_per_s=100)
    role = DecodeInstance(FakeServingEngine(), FakeKVClient(), "model", scheduling)
    intervals = []
    for running in (1, 5, 10, 30):
        role.decoding = {str(i): None for i in range(running)}  # type: ignore[misc]
        intervals.append(role.stream_interval_s())
    assert intervals == [0.01, 0.05, 0.1, 0.1]


def test_a_lease_about_to_expire_is_neither_written_nor_handed_over() -> None:
    async def scenario() -> None:
        kv = FakeKVClient(lease_s=1.0)  # less than LEASE_MARGIN_S left when the step starts
        role = _decoding_role(kv)
        messages = [m async for m in role.prefill(_prefill_task(_request("r", 40, 4)))]
        task = _events(messages)[-1].decode_task
        assert not task.lease.lease_id and task.decision.decode_instance == "decode-0"
        await _eventually(lambda: kv.released == list(kv.leases))  # given back at once

    asyncio.run(scenario())


def test_a_lease_that_aged_in_the_queue_is_replaced_by_a_fresh_one() -> None:
    async def scenario() -> None:
        # the lease taken on arrival has 12 s of its 30 left when the prefill starts: less
        # than half, so the prefill takes a fresh one rather than leave the decode too little
        kv = FakeKVClient(lease_s=12.0)
        role = _decoding_role(kv)
        real_alloc = kv.alloc_pages

        def alloc_then_fresh(*args) -> kv_pb2.KVLease:
            lease = real_alloc(*args)
            kv.lease_s = 30.0
            return lease

        kv.alloc_pages = alloc_then_fresh
        messages = [m async for m in role.prefill(_prefill_task(_request("r", 40, 4)))]
        task = _events(messages)[-1].decode_task
        aged, fresh = list(kv.leases)
        assert task.lease.lease_id == fresh
        await _eventually(lambda: kv.released == [aged])

    asyncio.run(scenario())
