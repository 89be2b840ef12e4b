"""The prefill queue: policy order within PrefillSchedBatch batches, no starvation."""

from __future__ import annotations

import pytest

from cluster.prefill_queue import PrefillQueue, QueuedPrompt, QueuePolicy


def drain(queue: PrefillQueue) -> list[str]:
    order: list[str] = []
    while (item := queue.pop()) is not None:
        order.append(item.request_id)
    return order


def filled(policy: QueuePolicy | str, prompts: list[tuple[str, int]], batch: int) -> PrefillQueue:
    queue = PrefillQueue(policy, sched_batch=batch)
    for request_id, tokens in prompts:
        queue.push(request_id, tokens)
    return queue


PROMPTS = [("a", 300), ("b", 20), ("c", 700), ("d", 20), ("e", 5)]


def test_fcfs_keeps_arrival_order() -> None:
    assert drain(filled(QueuePolicy.FCFS, PROMPTS, batch=2)) == ["a", "b", "c", "d", "e"]


def test_sjf_sorts_shortest_first_within_a_batch_ties_by_arrival() -> None:
    assert drain(filled("sjf", PROMPTS, batch=16)) == ["e", "b", "d", "a", "c"]


def test_ljf_puts_longest_first_within_a_batch() -> None:
    assert drain(filled("ljf", PROMPTS, batch=16)) == ["c", "a", "b", "d", "e"]


def test_sorting_is_bounded_by_sched_batch() -> None:
    # Batches of 2 in arrival order: [a, b] [c, d] [e], each sorted on its own.
    assert drain(filled(QueuePolicy.SJF, PROMPTS, batch=2)) == ["b", "a", "d", "c", "e"]
    assert drain(filled(QueuePolicy.LJF, PROMPTS, batch=2)) == ["a", "b", "c", "d", "e"]


def test_popped_items_carry_their_arrival_numbers() -> None:
    queue = filled(QueuePolicy.SJF, [("x", 50), ("y", 10)], batch=4)
    assert queue.pop() == QueuedPrompt("y", 10, 1)
    assert queue.pop() == QueuedPrompt("x", 50, 0)
    assert queue.pop() is None


@pytest.mark.parametrize("batch", [1, 4, 16])
def test_sjf_cannot_starve_a_long_prompt_beyond_the_sched_batch(batch: int) -> None:
    queue = PrefillQueue(QueuePolicy.SJF, sched_batch=batch)
    queue.push("long", 4000)
    for step in range(3 * batch):
        queue.push(f"early-{step}", 8)
    popped: list[str] = []
    for step in range(10 * batch):
        queue.push(f"late-{step}", 8)
        item = queue.pop()
        assert item is not None
        popped.append(item.request_id)
    assert "long" in popped[:batch]


def test_later_short_prompt_does_not_jump_ahead_of_scheduled_work() -> None:
    queue = filled(QueuePolicy.SJF, [("a", 100), ("b", 200)], batch=2)
    assert queue.pop() == QueuedPrompt("a", 100, 0)
    queue.push("tiny", 1)
    assert drain(queue) == ["b", "tiny"]


def test_remove_cancels_from_raw_and_scheduled_queues() -> None:
    queue = filled(QueuePolicy.FCFS, PROMPTS, batch=2)
    assert queue.pop() is not None  # schedules [a, b], releases a
    assert queue.remove("b")  # scheduled
    assert queue.remove("d")  # raw
    assert not queue.remove("d")
    assert not queue.remove("a")  # already released
    assert len(queue) == 2
    assert queue.queued_tokens() == 705
    assert drain(queue) == ["c", "e"]


def test_length_and_queued_tokens_follow_push_and_pop() -> None:
    queue = PrefillQueue()
    assert len(queue) == 0
    assert queue.queued_tokens() == 0
    assert queue.pop() is None
    queue.push("a", 30)
    queue.push("b", 12)
    assert len(queue) == 2
    assert queue.queued_tokens() == 42
    assert "a" in queue
    queue.pop()
    assert len(queue) == 1
    assert queue.queued_tokens() == 12
    assert "a" not in queue


def test_duplicate_waiting_id_is_rejected_but_a_released_id_may_return() -> None:
    queue = PrefillQueue(sched_batch=1)
    queue.push("a", 10)
    with pytest.raises(ValueError):
        queue.push("a", 10)
    queue.pop()  # schedules and releases a
    queue.push("a", 10)
    assert len(queue) == 1


@pytest.mark.parametrize(
    ("policy", "batch", "tokens"),
    [("fifo", 16, 1), (QueuePolicy.FCFS, 0, 1), (QueuePolicy.FCFS, 16, -1)],
)
def test_invalid_settings_and_lengths_are_rejected(
    policy: str | QueuePolicy, batch: int, tokens: int
) -> None:
    with pytest.raises(ValueError):
        PrefillQueue(policy, sched_batch=batch).push("a", tokens)


def test_release_fills_the_engine_up_to_two_chunks_in_policy_order() -> None:
    queue = PrefillQueue("sjf", sched_batch=8)
    for request_id, tokens in [("a", 300), ("b", 100), ("c", 200), ("d", 50)]:
        queue.push(request_id, tokens)
    # 100 tokens already in the engine, chunks of 200: released while under 400 tokens.
    released = queue.release(in_engine_tokens=100, chunk_tokens=200)
    assert [item.request_id for item in released] == ["d", "b", "c"]  # 150, 250, then 450
    assert queue.release(in_engine_tokens=450, chunk_tokens=200) == []
    assert [item.request_id for item in queue.release(0, chunk_tokens=200)] == ["a"]
    assert queue.release(in_engine_tokens=0, chunk_tokens=200) == []
