"""The simulator's event queue: time order, ties in push order, no event in the past."""

from __future__ import annotations

import pytest

from cluster.sim.events import EventQueue


def test_events_run_in_time_order_and_ties_in_push_order() -> None:
    events = EventQueue()
    seen: list[tuple[float, str]] = []

    def record(name: str) -> None:
        seen.append((events.now, name))

    for time_s, name in [(2.0, "late"), (1.0, "first tie"), (1.0, "second tie"), (0.5, "early")]:
        events.at(time_s, record, name)
    events.run()
    assert seen == [(0.5, "early"), (1.0, "first tie"), (1.0, "second tie"), (2.0, "late")]


def test_an_event_scheduled_for_now_runs_after_those_already_due_now() -> None:
    events = EventQueue()
    seen: list[str] = []

    def first(_: object) -> None:
        seen.append("first")
        events.after(0.0, lambda _: seen.append("pushed by first"))

    events.at(1.0, first)
    events.at(1.0, lambda _: seen.append("second"))
    events.run()
    assert seen == ["first", "second", "pushed by first"]


def test_run_stops_at_until_and_the_past_is_refused() -> None:
    events = EventQueue()
    seen: list[float] = []
    for time_s in (1.0, 2.0, 3.0):
        events.at(time_s, seen.append, time_s)
    events.run(until_s=2.0)
    assert seen == [1.0, 2.0] and len(events) == 1
    with pytest.raises(ValueError):
        events.at(1.5, seen.append, 1.5)
