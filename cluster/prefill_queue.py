"""A prefill instance's queue: requests wait here until released to the engine in policy order.

Arriving requests enter the raw queue. When the scheduled queue runs dry, up to
`sched_batch` (PrefillSchedBatch) requests are taken from the raw queue in arrival order,
sorted by the policy (FCFS, SJF or LJF by prompt length; ties by arrival) and appended to the
scheduled queue, which releases them one by one to be packed into chunks: while the engine
holds fewer than CHUNKS_IN_ENGINE chunks of released, not yet prefilled prompt tokens
(`release`). Scheduling is
non-preemptive: a later short prompt never jumps ahead of already-scheduled work, and the
bounded batch keeps long prompts from starving under SJF.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

# The engine holds at most this many chunks of released, not yet prefilled prompt tokens:
# one being computed and one ready, so the engine never idles between chunks.
CHUNKS_IN_ENGINE = 2


class QueuePolicy(StrEnum):
    FCFS = "fcfs"
    SJF = "sjf"
    LJF = "ljf"


@dataclass(frozen=True, slots=True)
class QueuedPrompt:
    """A waiting request: its prompt length and the arrival number the queue gave it."""

    request_id: str
    prompt_tokens: int
    arrival: int


def _sort_key(policy: QueuePolicy) -> Callable[[QueuedPrompt], tuple[int, int]]:
    if policy is QueuePolicy.SJF:
        return lambda item: (item.prompt_tokens, item.arrival)
    if policy is QueuePolicy.LJF:
        return lambda item: (-item.prompt_tokens, item.arrival)
    return lambda item: (0, item.arrival)


class PrefillQueue:
    """Raw queue plus scheduled queue, released in `policy` order batch by batch."""

    def __init__(self, policy: QueuePolicy | str = QueuePolicy.FCFS, sched_batch: int = 16) -> None:
        if sched_batch < 1:
            raise ValueError(f"sched_batch must be >= 1, got {sched_batch}")
        self.policy = QueuePolicy(policy)
        self.sched_batch = sched_batch
        self._key = _sort_key(self.policy)
        self._raw: deque[QueuedPrompt] = deque()
        self._scheduled: deque[QueuedPrompt] = deque()
        self._waiting: dict[str, QueuedPrompt] = {}
        self._tokens = 0
        self._arrivals = 0

    def push(self, request_id: str, prompt_tokens: int) -> None:
        """Append a request to the raw queue; its id must not be waiting already."""
        if request_id in self._waiting:
            raise ValueError(f"request {request_id!r} is already queued")
        if prompt_tokens < 0:
            raise ValueError(f"request {request_id!r}: negative prompt length {prompt_tokens}")
        item = QueuedPrompt(request_id, prompt_tokens, self._arrivals)
        self._arrivals += 1
        self._raw.append(item)
        self._waiting[request_id] = item
        self._tokens += prompt_tokens

    def pop(self) -> QueuedPrompt | None:
        """The next request to release, or None when nothing waits."""
        if not self._scheduled:
            self._schedule_batch()
        if not self._scheduled:
            return None
        item = self._scheduled.popleft()
        self._forget(item)
        return item

    def release(self, in_engine_tokens: int, chunk_tokens: int) -> list[QueuedPrompt]:
        """The requests to let into the engine now, in policy order, given the prompt
        tokens it holds not yet prefilled: while under CHUNKS_IN_ENGINE chunks."""
        released = []
        while in_engine_tokens < CHUNKS_IN_ENGINE * chunk_tokens:
            item = self.pop()
            if item is None:
                break
            released.append(item)
            in_engine_tokens += item.prompt_tokens
        return released

    def remove(self, request_id: str) -> bool:
        """Cancel a waiting request; False when it is not waiting."""
        item = self._waiting.get(request_id)
        if item is None:
            return False
        queue = self._scheduled if item in self._scheduled else self._raw
        queue.remove(item)
        self._forget(item)
        return True

    def __len__(self) -> int:
        return len(self._raw) + len(self._scheduled)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._waiting

    def queued_tokens(self) -> int:
        """Prompt tokens of every waiting request, raw and scheduled."""
        return self._tokens

    def _schedule_batch(self) -> None:
        count = min(self.sched_batch, len(self._raw))
        batch = [self._raw.popleft() for _ in range(count)]
        self._scheduled.extend(sorted(batch, key=self._key))

    def _forget(self, item: QueuedPrompt) -> None:
        del self._waiting[item.request_id]
        self._tokens -= item.prompt_tokens
