"""NT auto-scaling: add an instance of an NT that has been overloaded for long enough.

Each epoch the sNIC reports, per NT type, demand over capacity. Once an NT has stayed above
the threshold for `overload_window_ns` without a break, the autoscaler starts loading one more
instance into a free region; the instance serves traffic `region_load_ns` later. One launch per
NT at a time, up to a maximum per NT. Times are simulated nanoseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    task: str
    decided_ns: float
    ready_ns: float


@dataclass(slots=True)
class Autoscaler:
    overload_window_ns: float
    region_load_ns: float
    threshold: float = 1.0
    max_instances: int = 4
    instances: dict[str, int] = field(default_factory=dict)
    history: list[ScaleEvent] = field(default_factory=list)
    _overloaded_since: dict[str, float] = field(default_factory=dict)
    _loading: dict[str, ScaleEvent] = field(default_factory=dict)

    def observe(self, task: str, load_ratio: float, now_ns: float) -> list[str]:
        """Record one epoch's load of `task`; returns the NTs whose new instance is ready now."""
        ready = self._finish_loads(now_ns)
        if load_ratio <= self.threshold:
            self._overloaded_since.pop(task, None)
            return ready
        since = self._overloaded_since.setdefault(task, now_ns)
        can_grow = self.instances.get(task, 1) < self.max_instances and task not in self._loading
        if can_grow and now_ns - since >= self.overload_window_ns:
            event = ScaleEvent(task, now_ns, now_ns + self.region_load_ns)
            self._loading[task] = event
            self.history.append(event)
            self._overloaded_since.pop(task, None)
        return ready

    def _finish_loads(self, now_ns: float) -> list[str]:
        done = [task for task, event in self._loading.items() if event.ready_ns <= now_ns]
        for task in done:
            del self._loading[task]
            self.instances[task] = self.instances.get(task, 1) + 1
        return done
