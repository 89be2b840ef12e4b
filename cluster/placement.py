"""Where work goes: the load view of instances and the placement policies over it.

The global scheduler places a request on a prefill instance; the decode dispatcher on the
prefill instance places it on a decode instance. Both choose over `InstanceLoad`s through a
`Placement` policy, told what the request needs (`RequestNeed`: predicted KV tokens and
whether its decode is predicted heavy). The least-loaded policy here is the default and
ignores the need; the research dispatchers in `cluster.decode_dispatch` (power-of-two over
predicted free memory, heavy:light ratio) plug in through the same seam. For a caller that
chooses many times between load reports (the simulator, at a thousand instances),
`LeastLoaded.indexed` keeps the least-loaded choice in a heap and `LoadsById` keeps the
loads in the id order the dispatchers walk; both choose exactly as the plain policies do.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class InstanceLoad:
    instance_id: str
    queued: int = 0
    running: int = 0
    free_kv_tokens: int = 0
    heavy_decodes: int = 0
    light_decodes: int = 0
    # Decode tokens the instance is predicted still to make for the requests it holds.
    predicted_tokens: int = 0

    @property
    def outstanding(self) -> int:
        return self.queued + self.running

    # A placer counts what it sends until the instance's next load report says it: the
    # global scheduler its placements on prefill instances, a decode dispatcher its
    # dispatches to decode instances.
    def placed(self) -> None:
        self.queued += 1

    def left(self) -> None:
        """A request placed here left the queue (its prefill ended)."""
        self.queued = max(self.queued - 1, 0)

    def dispatched(self, need: RequestNeed, predicted_tokens: int) -> None:
        """A request dispatched here to decode `predicted_tokens` (at least one)."""
        self.queued += 1
        self.free_kv_tokens = max(self.free_kv_tokens - need.kv_tokens, 0)
        self.predicted_tokens += max(predicted_tokens, 1)
        if need.heavy:
            self.heavy_decodes += 1
        else:
            self.light_decodes += 1

    def reported(self, known: InstanceLoad) -> InstanceLoad:
        """This report of a prefill instance, counting the placements `known` holds that
        have not arrived there yet."""
        self.queued = max(self.queued, known.queued)
        return self


@dataclass(frozen=True, slots=True)
class RequestNeed:
    """What one request asks of the instance it is placed on."""

    kv_tokens: int = 0  # prompt + predicted decode tokens (bucket lower bound)
    heavy: bool = False  # predicted heavy decode


NO_NEED = RequestNeed()


class LoadsById(Mapping[str, InstanceLoad]):
    """A read-only map of loads by instance id that keeps them in id order too, sorted once
    when it is built: a policy that walks loads in id order (the decode dispatchers, for a
    seeded choice) takes `ordered` instead of sorting the map at every choice."""

    __slots__ = ("_loads", "ordered")

    def __init__(self, loads: Mapping[str, InstanceLoad]) -> None:
        self.ordered = sorted(loads.values(), key=lambda load: load.instance_id)
        self._loads = dict(loads)

    def __getitem__(self, instance_id: str) -> InstanceLoad:
        return self._loads[instance_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loads)

    def __len__(self) -> int:
        return len(self._loads)


class Placement(Protocol):
    def choose(self, loads: Mapping[str, InstanceLoad], need: RequestNeed = NO_NEED) -> str | None:
        """The instance to use, or None when there is none to choose from."""
        ...


class LeastLoaded:
    """Fewest outstanding requests; ties go to the instance with the most free KV.

    The request's need plays no part.
    """

    def choose(self, loads: Mapping[str, InstanceLoad], need: RequestNeed = NO_NEED) -> str | None:
        if not loads:
            return None
        best = min(loads.values(), key=_least_loaded_order)
        return best.instance_id

    def indexed(self, loads: Mapping[str, InstanceLoad]) -> LeastLoadedIndex:
        """`choose` over `loads` kept in a heap, for a caller that places many requests
        between load reports (the simulator): O(log n) a choice instead of O(n)."""
        return LeastLoadedIndex(loads)


class LeastLoadedIndex:
    """What `LeastLoaded.choose(loads)` would return, in O(log n): a heap of each load's
    order key, told through `changed` whenever a load in `loads` changes. Keys a load no
    longer has are skipped (and dropped) when they reach the top."""

    __slots__ = ("_heap", "_loads")

    def __init__(self, loads: Mapping[str, InstanceLoad]) -> None:
        self._loads = loads
        self._heap = [_least_loaded_order(load) for load in loads.values()]
        heapq.heapify(self._heap)

    def changed(self, load: InstanceLoad) -> None:
        heapq.heappush(self._heap, _least_loaded_order(load))

    def choose(self) -> str | None:
        heap, loads = self._heap, self._loads
        while heap:
            key = heap[0]
            load = loads.get(key[2])
            if load is not None and _least_loaded_order(load) == key:
                return key[2]
            heapq.heappop(heap)
        return None


def _least_loaded_order(load: InstanceLoad) -> tuple[int, int, str]:
    return (load.outstanding, -load.free_kv_tokens, load.instance_id)
