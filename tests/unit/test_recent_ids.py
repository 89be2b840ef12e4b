"""RecentIds keeps what it is told about the latest ids, forgets the oldest past its
capacity, and gives each value once."""

from __future__ import annotations

from cluster.recent_ids import RecentIds


def test_the_oldest_id_is_forgotten_past_capacity_and_a_value_is_taken_once() -> None:
    recent: RecentIds[int] = RecentIds(capacity=2)
    for i, request_id in enumerate(("a", "b", "c")):
        recent.remember(request_id, i)
    assert "a" not in recent and "b" in recent
    assert recent.take("b") == 1
    assert recent.take("b") is None and recent.take("a") is None
    assert recent.take("c") == 2
