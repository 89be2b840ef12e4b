"""The simulator's clock: a queue of timed events, run in time order.

Every other piece of the simulator says what happens next by scheduling an event here
(an arrival at the ingress, the end of a forward pass, a KV read landing, a monitor
round). Events at the same instant run in the order they were scheduled, so a run is
the same for the same inputs on any machine.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

Action = Callable[[Any], None]
# Called with (simulated seconds now, events run so far).
Progress = Callable[[float, int], None]


class EventQueue:
    """A heap of (time, sequence number, action, argument); ties go to the earlier push."""

    __slots__ = ("_heap", "_pushed", "events_run", "now")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Action, Any]] = []
        self._pushed = 0
        self.now = 0.0
        self.events_run = 0

    def at(self, time_s: float, action: Action, argument: Any = None) -> None:
        """Run `action(argument)` at `time_s`, which must not lie in the past."""
        if time_s < self.now:
            raise ValueError(f"event at {time_s} s is before now ({self.now} s)")
        heapq.heappush(self._heap, (time_s, self._pushed, action, argument))
        self._pushed += 1

    def after(self, delay_s: float, action: Action, argument: Any = None) -> None:
        self.at(self.now + delay_s, action, argument)

    def __len__(self) -> int:
        return len(self._heap)

    def run(
        self,
        until_s: float = math.inf,
        progress: Progress | None = None,
        progress_every: int = 100_000,
    ) -> None:
        """Run events in order until none is left or the next lies beyond `until_s`;
        `progress` is called every `progress_every` events and once at the end."""
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= until_s:
            time_s, _, action, argument = pop(heap)
            self.now = time_s
            action(argument)
            self.events_run += 1
            if progress is not None and self.events_run % progress_every == 0:
                progress(self.now, self.events_run)
        if progress is not None:
            progress(self.now, self.events_run)
