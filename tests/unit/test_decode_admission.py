"""Decode admission on hand-computed batches: greedy, reserve-static, reserve-dynamic."""

from __future__ import annotations

import pytest

from cluster.decode_admission import (
    ADMISSIONS,
    Candidate,
    Greedy,
    ReserveDynamic,
    ReserveStatic,
    RunningDecode,
    make_admission,
)

CAPACITY = 100


def batch() -> list[RunningDecode]:
    """A holds 20 with 10 to go; B and C hold 30 each with 40 to go. Free now: 20."""
    return [
        RunningDecode("A", kv_tokens=20, predicted_remaining=10),
        RunningDecode("B", kv_tokens=30, predicted_remaining=40),
        RunningDecode("C", kv_tokens=30, predicted_remaining=40),
    ]


def test_dynamic_refuses_what_overflows_when_the_shortest_job_finishes() -> None:
    # At s=10: B and C hold 40 each; the candidate holds 15 + 10; 105 > 100.
    candidate = Candidate("r", prompt_tokens=15, predicted_output=50)
    assert Greedy().admit(candidate, batch(), CAPACITY)
    assert not ReserveDynamic().admit(candidate, batch(), CAPACITY)


def test_dynamic_admits_what_fits_when_the_shortest_job_finishes() -> None:
    # At s=10: 80 for B and C, 5 + 10 for the candidate; 95 <= 100.
    candidate = Candidate("r", prompt_tokens=5, predicted_output=50)
    assert ReserveDynamic().admit(candidate, batch(), CAPACITY)


def test_dynamic_counts_a_short_candidate_only_up_to_its_own_output() -> None:
    # At s=10: 80 + 18 + min(10, 2) = 100, exactly full.
    candidate = Candidate("r", prompt_tokens=18, predicted_output=2)
    assert ReserveDynamic().admit(candidate, batch(), CAPACITY)
    longer = Candidate("r", prompt_tokens=18, predicted_output=3)
    assert not ReserveDynamic().admit(longer, batch(), CAPACITY)


def test_dynamic_frees_every_job_that_ends_by_the_shortest_finish() -> None:
    # Both jobs end at s=5; the candidate alone holds 70 + 5.
    running = [RunningDecode("A", 45, 5), RunningDecode("B", 45, 5)]
    assert ReserveDynamic().admit(Candidate("r", 9, 70), running, CAPACITY)


def test_dynamic_still_needs_the_prompt_to_fit_now() -> None:
    # A finishes now (s=0), which would leave room, but there are only 10 tokens free now.
    running = [RunningDecode("A", 90, 0)]
    assert not ReserveDynamic().admit(Candidate("r", 10, 0), running, CAPACITY)
    assert ReserveDynamic().admit(Candidate("r", 9, 0), running, CAPACITY)


def test_static_refuses_what_greedy_admits_when_the_output_does_not_fit() -> None:
    candidate = Candidate("r", prompt_tokens=5, predicted_output=50)
    assert Greedy().admit(candidate, batch(), CAPACITY)
    assert not ReserveStatic().admit(candidate, batch(), CAPACITY)


def test_static_admits_when_prompt_and_output_fit_now() -> None:
    assert ReserveStatic().admit(Candidate("r", 5, 15), batch(), CAPACITY)
    assert not ReserveStatic().admit(Candidate("r", 5, 16), batch(), CAPACITY)


def test_greedy_needs_room_for_the_prompt_and_one_token() -> None:
    assert Greedy().admit(Candidate("r", 19, 1000), batch(), CAPACITY)
    assert not Greedy().admit(Candidate("r", 20, 0), batch(), CAPACITY)


@pytest.mark.parametrize("name", sorted(ADMISSIONS))
def test_every_policy_admits_on_an_idle_instance(name: str) -> None:
    too_big = Candidate("r", prompt_tokens=CAPACITY * 2, predicted_output=CAPACITY * 2)
    assert make_admission(name).admit(too_big, [], CAPACITY)


@pytest.mark.parametrize("name", sorted(ADMISSIONS))
def test_made_by_name_carries_its_name(name: str) -> None:
    assert make_admission(name).name == name


def test_bad_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="greedy, reserve_dynamic, reserve_static"):
        make_admission("fcfs")


def test_negative_predictions_are_refused() -> None:
    with pytest.raises(ValueError):
        RunningDecode("A", kv_tokens=10, predicted_remaining=-1)
    with pytest.raises(ValueError):
        Candidate("r", prompt_tokens=10, predicted_output=-1)
