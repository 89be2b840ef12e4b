"""Instance flip: sustained idleness starts a drain; the switch waits for the drain to finish."""

from __future__ import annotations

import pytest

from cluster.instance_flip import FlipController, FlipState, Role
from cluster.placement import InstanceLoad

P, D = Role.PREFILL, Role.DECODE


def controller(idle_rounds: int | None = 3, **kwargs: int) -> FlipController:
    roles = {"p0": P, "p1": P, "d0": D}
    return FlipController(roles, idle_rounds=idle_rounds, busy_outstanding=2, **kwargs)


def loads(**outstanding: int) -> dict[str, InstanceLoad]:
    return {iid: InstanceLoad(iid, running=n) for iid, n in outstanding.items()}


def idle_p1(flips: FlipController, rounds: int) -> list[list[str]]:
    """`rounds` rounds in which p1 is idle while p0 and d0 are busy."""
    return [flips.observe(loads(p0=3, p1=0, d0=5)) for _ in range(rounds)]


def test_sustained_idleness_starts_a_drain() -> None:
    flips = controller()
    assert idle_p1(flips, 3) == [[], [], ["p1"]]
    assert flips.state("p1") is FlipState.DRAINING
    assert flips.routable(P) == ["p0"]


def test_a_busy_round_resets_the_idle_count() -> None:
    flips = controller()
    assert idle_p1(flips, 2) == [[], []]
    assert flips.observe(loads(p0=3, p1=1, d0=5)) == []
    assert idle_p1(flips, 2) == [[], []]
    assert idle_p1(flips, 1) == [["p1"]]


def test_without_idle_rounds_only_a_request_drains() -> None:
    flips = controller(idle_rounds=None)
    assert idle_p1(flips, 50) == [[]] * 50
    flips.request_flip("p1")
    assert flips.state("p1") is FlipState.DRAINING
    assert flips.observe(loads(p0=3, p1=0, d0=5)) == [] and flips.ready_to_flip() == ["p1"]


def test_no_drain_while_the_other_role_is_not_busy() -> None:
    flips = controller()
    for _ in range(10):
        assert flips.observe(loads(p0=3, p1=0, d0=1)) == []
    assert flips.routable(P) == ["p0", "p1"]


def test_a_flip_drains_before_it_switches() -> None:
    flips = controller()
    assert not flips.changing()
    flips.request_flip("p0")
    assert flips.state("p0") is FlipState.DRAINING
    assert flips.changing()
    assert flips.routable(P) == ["p1"]
    flips.observe(loads(p0=2, p1=1, d0=5))
    assert flips.ready_to_flip() == []
    with pytest.raises(ValueError):
        flips.flipped("p0")
    assert flips.role("p0") is P
    flips.observe(loads(p0=1, p1=1, d0=5))
    assert flips.ready_to_flip() == []
    flips.observe(loads(p0=0, p1=1, d0=5))
    assert flips.ready_to_flip() == ["p0"]
    assert flips.flipped("p0") is D
    assert flips.role("p0") is D
    assert flips.state("p0") is FlipState.ACTIVE
    assert not flips.changing()
    assert flips.routable(D) == ["d0", "p0"]
    assert flips.routable(P) == ["p1"]
    assert flips.ready_to_flip() == []


def test_a_flipped_instance_starts_its_idle_count_over() -> None:
    flips = controller()
    assert idle_p1(flips, 3)[-1] == ["p1"]
    flips.flipped("p1")
    # p1 is now a decode instance counting from zero, like d0: had it kept its three idle
    # rounds it would drain at once; instead both reach three together and d0 wins on id.
    for _ in range(2):
        assert flips.observe(loads(p0=3, p1=0, d0=0)) == []
    assert flips.observe(loads(p0=3, p1=0, d0=0)) == ["d0"]


def test_min_per_role_keeps_the_last_instance() -> None:
    flips = controller()
    for _ in range(10):
        assert flips.observe(loads(p0=3, p1=3, d0=0)) == []
    assert flips.routable(D) == ["d0"]
    with pytest.raises(ValueError):
        flips.request_flip("d0")
    assert flips.state("d0") is FlipState.ACTIVE


def test_min_per_role_counts_instances_already_draining() -> None:
    flips = controller()
    flips.request_flip("p0")
    with pytest.raises(ValueError):
        flips.request_flip("p1")
    assert flips.routable(P) == ["p1"]


def test_at_most_one_new_drain_per_round() -> None:
    roles = {"p0": P, "p1": P, "p2": P, "d0": D}
    flips = FlipController(roles, idle_rounds=1, busy_outstanding=2)
    idle = loads(p0=0, p1=0, p2=0, d0=5)
    assert flips.observe(idle) == ["p0"]
    assert flips.observe(idle) == ["p1"]
    assert flips.observe(idle) == []
    assert flips.routable(P) == ["p2"]


def test_request_flip_of_a_draining_instance_is_refused() -> None:
    flips = controller()
    flips.request_flip("p0")
    with pytest.raises(ValueError):
        flips.request_flip("p0")


def test_unknown_instance() -> None:
    with pytest.raises(KeyError):
        controller().role("nope")


def _three_instances() -> FlipController:
    """p0 and two decode instances; no flips on idleness."""
    return FlipController({"p0": P, "d0": D, "d1": D}, idle_rounds=None)


def test_a_role_nobody_answers_for_is_taken_over_while_another_keeps_the_donor_role() -> None:
    flips = _three_instances()
    assert flips.take_over({"p0", "d0", "d1"}) is None  # both roles answer
    assert flips.take_over({"d0", "d1"}) == "d0"  # p0 died: d0 drains to take prefill on
    assert flips.state("d0") is FlipState.DRAINING and flips.routable(D) == ["d1"]
    assert flips.take_over({"d0", "d1"}) is None  # already under way
    flips.observe(loads(d0=0))
    assert flips.ready_to_flip() == ["d0"] and flips.flipped("d0") is P
    assert flips.take_over({"d0", "d1"}) is None


def test_no_take_over_that_would_leave_the_donor_role_empty() -> None:
    flips = _three_instances()
    assert flips.take_over({"d0"}) is None  # p0 and d1 gone: d0 is the last decode
    assert flips.take_over({"p0"}) is None  # both decodes gone: p0 is the last prefill
    assert flips.state("d0") is FlipState.ACTIVE


def test_the_least_busy_instance_takes_over() -> None:
    flips = FlipController({"p0": P, "d0": D, "d1": D}, idle_rounds=None)
    flips.observe(loads(d0=4, d1=1))
    assert flips.take_over({"d0", "d1"}) == "d1"


def test_an_instances_own_word_for_its_role_holds() -> None:
    # A controller started again, with the first roles; p0 had flipped to decode meanwhile.
    flips = FlipController({"p0": Role.PREFILL, "p1": Role.PREFILL, "d0": Role.DECODE})
    flips.request_flip("p1")
    flips.reported("p0", Role.DECODE)
    flips.reported("d0", Role.DECODE)  # agrees: nothing changes
    flips.reported("unknown", Role.DECODE)
    assert flips.routable(Role.DECODE) == ["d0", "p0"]
    assert flips.routable(Role.PREFILL) == []
    assert flips.state("p1") is FlipState.DRAINING  # a drain under way goes on
