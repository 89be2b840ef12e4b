"""The global scheduler places nothing on an instance that is gone: one that missed the
last monitor round, or that a request's owner reported lost, until it answers again. It
refuses a request once every instance of a role holds as many waiting requests as it may.
The requests of an owner that died end, and the roles instances report hold over its own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.scheduler import global_scheduler
from actors.scheduler.global_scheduler import GlobalScheduler, NoInstanceAvailable, Overloaded
from actors.wire import load_to_wire
from cluster.instance_flip import Role
from cluster.kv_capability import CapabilityError
from cluster.kv_pages import tenant_id
from cluster.placement import InstanceLoad
from tetriserve.v1 import generate_pb2, scheduling_pb2


class FakeMethod:
    """`handle.method.remote(...)` of a Ray actor handle, answered by a plain function."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def remote(self, *args: Any) -> Any:
        async def call() -> Any:
            return self.answer(*args)

        return call()


class FakeHangingMethod:
    """A call to an actor that Ray is restarting: it answers only once the restart is done."""

    def remote(self, *args: Any) -> Any:
        return asyncio.sleep(3600)


class FakeInstance:
    """A serving instance's handle that reports a load, or fails like a dead actor."""

    def __init__(self, name: str, role: Role) -> None:
        self.role = role
        self.dead = False
        self.queued = 0
        self.load_report = FakeMethod(lambda: self._report(name))
        self.set_decode_loads = FakeMethod(lambda reports: None)
        self.roles_set: list[str] = []
        self.set_role = FakeMethod(self.roles_set.append)

    def _report(self, name: str) -> bytes:
        if self.dead:
            raise RuntimeError("the actor died")
        return load_to_wire(InstanceLoad(name, queued=self.queued), self.role).SerializeToString()

    def restarting(self) -> None:
        self.load_report = self.set_decode_loads = FakeHangingMethod()


FOUR_INSTANCES = {
    "prefill-0": "prefill",
    "prefill-1": "prefill",
    "decode-0": "decode",
    "decode-1": "decode",
}


def _scheduler(
    roles: dict[str, str] = FOUR_INSTANCES,
) -> tuple[GlobalScheduler, dict[str, FakeInstance]]:
    instances = {name: FakeInstance(name, Role(role)) for name, role in roles.items()}
    scheduler = GlobalScheduler(
        instances,
        roles,
        max_queued_per_instance=3,
        kv_secret=b"the scheduler test's own secret",
        model_id="model",
    )
    return scheduler, instances


def _place(scheduler: GlobalScheduler, request_id: str, owner: str = "") -> str:
    request = generate_pb2.GenerateRequest(request_id=request_id)
    decision = asyncio.run(_placed(scheduler, request.SerializeToString(), owner))
    return scheduling_pb2.DispatchDecision.FromString(decision).prefill_instance


async def _placed(scheduler: GlobalScheduler, request: bytes, owner: str = "") -> bytes:
    scheduler._monitor = asyncio.get_running_loop().create_future()  # no monitor loop here
    return await scheduler.place(request, owner)


def test_the_requests_of_an_owner_that_died_end_and_free_their_places(monkeypatch) -> None:
    scheduler, _ = _scheduler()
    for request_id, owner in (("a", "serve/replica-1"), ("b", "serve/replica-2"), ("c", "")):
        _place(scheduler, request_id, owner)

    async def fake_owner_alive(owner: str) -> bool:
        return owner != "serve/replica-1"

    monkeypatch.setattr(global_scheduler, "_owner_alive", fake_owner_alive)
    asyncio.run(scheduler._end_orphans())
    assert sorted(scheduler.in_flight) == ["b", "c"]
    assert sum(load.queued for load in scheduler.loads.values()) == 2
    _place(scheduler, "a", "serve/replica-2")  # ended, not remembered as ended early
    assert sorted(scheduler.in_flight) == ["a", "b", "c"]


def test_an_instance_reported_lost_gets_nothing_until_it_answers_again() -> None:
    scheduler, _ = _scheduler()
    assert _place(scheduler, "a") == "prefill-0"
    scheduler.finished("a")
    scheduler.instance_lost("prefill-0")
    assert [_place(scheduler, r) for r in ("b", "c")] == ["prefill-1", "prefill-1"]
    asyncio.run(scheduler._collect_and_broadcast())  # prefill-0 answers this round
    assert scheduler.unreachable == set()
    assert _place(scheduler, "d") == "prefill-0"


def test_an_instance_that_misses_a_round_is_unreachable() -> None:
    scheduler, instances = _scheduler()
    instances["prefill-0"].dead = True
    asyncio.run(scheduler._collect_and_broadcast())
    assert scheduler.unreachable == {"prefill-0"}
    assert scheduler.stats()["unreachable"] == ["prefill-0"]
    assert _place(scheduler, "a") == "prefill-1"
    instances["prefill-1"].dead = instances["decode-1"].dead = True  # no role to spare
    asyncio.run(scheduler._collect_and_broadcast())
    assert _place(scheduler, "b") == "decode-0"  # the survivor runs prefills too
    instances["decode-0"].dead = True
    asyncio.run(scheduler._collect_and_broadcast())
    with pytest.raises(NoInstanceAvailable):
        _place(scheduler, "c")


def test_a_placement_carries_a_kv_capability_for_the_requests_tenant() -> None:
    scheduler, _ = _scheduler()
    request = generate_pb2.GenerateRequest(request_id="a", model="base:sql", adapter_version=3)
    decision = asyncio.run(_placed(scheduler, request.SerializeToString()))
    capability = scheduling_pb2.DispatchDecision.FromString(decision).kv_capability
    assert scheduler.kv_authority.check(capability, tenant_id("model", "sql@3"))
    # The same name loaded again is another tenant: its pages are not this version's.
    with pytest.raises(CapabilityError, match="another tenant"):
        scheduler.kv_authority.check(capability, tenant_id("model", "sql@4"))


def test_a_loss_reported_for_an_unknown_instance_changes_nothing() -> None:
    scheduler, _ = _scheduler()
    scheduler.instance_lost("prefill-7")
    assert scheduler.unreachable == set()


def test_an_instance_that_is_restarting_does_not_hold_up_the_round(monkeypatch) -> None:
    monkeypatch.setattr("actors.scheduler.global_scheduler.ANSWER_TIMEOUT_S", 0.05)
    scheduler, instances = _scheduler()
    instances["prefill-0"].restarting()
    asyncio.run(asyncio.wait_for(scheduler._collect_and_broadcast(), timeout=5))
    assert scheduler.unreachable == {"prefill-0"}


def test_a_stream_whose_decode_instance_died_continues_on_a_reachable_one() -> None:
    scheduler, instances = _scheduler()
    scheduler.loads["decode-0"].queued = 3  # busier: decode-1 would be chosen first
    scheduler.instance_lost("decode-1")
    assert scheduler.decode_instance() == "decode-0"
    for name in ("decode-0", "decode-1", "prefill-1"):  # no prefill to spare either
        instances[name].dead = True
    asyncio.run(scheduler._collect_and_broadcast())
    assert scheduler.decode_instance() == "prefill-0"  # the survivor decodes too
    instances["prefill-0"].dead = True
    asyncio.run(scheduler._collect_and_broadcast())
    assert scheduler.decode_instance() == ""


def test_while_no_decode_instance_answers_the_prefill_instance_dispatches_to_itself() -> None:
    scheduler, instances = _scheduler({"prefill-0": "prefill", "decode-0": "decode"})
    broadcast: list[list[str]] = []

    def received(reports: list[bytes]) -> None:
        loads = (scheduling_pb2.LoadReport.FromString(report) for report in reports)
        broadcast.append(sorted(load.instance_id for load in loads))

    instances["prefill-0"].set_decode_loads = FakeMethod(received)
    instances["decode-0"].dead = True
    asyncio.run(scheduler._collect_and_broadcast())
    instances["decode-0"].dead = False  # Ray started it again
    asyncio.run(scheduler._collect_and_broadcast())
    assert broadcast == [["prefill-0"], ["decode-0"]]
    assert scheduler.stats()["roles"] == {"prefill-0": "prefill", "decode-0": "decode"}


def test_a_loss_reported_during_a_round_outlasts_the_report_sent_before_it() -> None:
    scheduler, instances = _scheduler()
    answered = instances["decode-0"].load_report.answer

    def report_then_die() -> bytes:
        report = answered()
        scheduler.instance_lost("decode-0")  # an owner saw it die after it answered
        return report

    instances["decode-0"].load_report = FakeMethod(report_then_die)
    asyncio.run(scheduler._collect_and_broadcast())
    assert scheduler.unreachable == {"decode-0"}
    assert scheduler.decode_instance() == "decode-1"


def test_a_role_no_instance_answers_for_is_taken_over() -> None:
    scheduler, instances = _scheduler()
    instances["prefill-0"].dead = instances["prefill-1"].dead = True
    asyncio.run(scheduler._collect_and_broadcast())
    assert instances["decode-0"].roles_set == ["prefill"]
    assert scheduler.flips == [("decode-0", "prefill")]
    assert _place(scheduler, "a") == "decode-0"


def test_requests_are_refused_once_every_prefill_queue_is_full() -> None:
    scheduler, _ = _scheduler()
    placed = [_place(scheduler, f"r{i}") for i in range(6)]  # 3 queued on each
    assert sorted(placed) == ["prefill-0"] * 3 + ["prefill-1"] * 3
    with pytest.raises(Overloaded, match="prefill"):
        _place(scheduler, "one too many")
    scheduler.prefilled("r0")  # one left its queue
    assert _place(scheduler, "r6") == placed[0]


def test_requests_are_refused_while_every_decode_queue_is_full() -> None:
    scheduler, instances = _scheduler()
    for name in ("decode-0", "decode-1"):
        instances[name].queued = 3
    asyncio.run(scheduler._collect_and_broadcast())
    with pytest.raises(Overloaded, match="decode"):
        _place(scheduler, "a")
    instances["decode-1"].queued = 2
    asyncio.run(scheduler._collect_and_broadcast())
    assert _place(scheduler, "a") == "prefill-0"


def test_a_request_that_ended_before_its_placement_arrived_is_not_placed() -> None:
    scheduler, _ = _scheduler()
    scheduler.finished("gone")  # the owner's calls arrived out of order
    with pytest.raises(Overloaded, match="ended"):
        _place(scheduler, "gone")
    assert scheduler.stats()["in_flight"] == 0
    assert _place(scheduler, "gone") == "prefill-0"  # an id is only forgotten once


def test_a_scheduler_started_again_follows_the_roles_instances_report() -> None:
    scheduler, instances = _scheduler()  # started with the deployment's first roles
    instances["prefill-1"].role = Role.DECODE  # flipped before the scheduler restarted
    asyncio.run(scheduler._collect_and_broadcast())
    assert scheduler.roles.routable(Role.DECODE) == ["decode-0", "decode-1", "prefill-1"]
    assert [_place(scheduler, r) for r in ("a", "b")] == ["prefill-0", "prefill-0"]


def test_the_monitor_polls_often_only_while_requests_are_in_flight_or_roles_change() -> None:
    scheduler, _ = _scheduler()
    assert scheduler.next_round_in_s() == scheduler.quiet_interval_s
    _place(scheduler, "r1")
    assert scheduler.next_round_in_s() == scheduler.monitor_interval_s
    scheduler.finished("r1")
    assert scheduler.next_round_in_s() == scheduler.quiet_interval_s
    scheduler.request_flip("prefill-1")
    assert scheduler.next_round_in_s() == scheduler.monitor_interval_s
    assert scheduler.monitor_interval_s < scheduler.quiet_interval_s


def test_a_placed_request_cuts_the_monitors_quiet_pause_short() -> None:
    scheduler, _ = _scheduler()
    scheduler.quiet_interval_s = 60.0

    async def pause_then_place() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        pause = asyncio.create_task(scheduler._pause())
        await asyncio.sleep(0.05)
        assert not pause.done()
        await _placed(scheduler, generate_pb2.GenerateRequest(request_id="r1").SerializeToString())
        await asyncio.wait_for(pause, 5)
        return loop.time() - started

    assert asyncio.run(pause_then_place()) < 5
