"""RecentIds: what is remembered about the most recent request ids, the oldest forgotten.

Owners and instances exchange calls that Ray may deliver late or out of order, so a few
facts are kept per request id for a while: the scheduler's requests that ended before their
placement arrived, a prefill instance's handoffs not yet read and requests let go early.
Each is bounded: past `capacity` ids, the oldest is forgotten.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class RecentIds(Generic[V]):
    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._kept: OrderedDict[str, V] = OrderedDict()

    def remember(self, request_id: str, value: V) -> None:
        self._kept[request_id] = value
        while len(self._kept) > self.capacity:
            self._kept.popitem(last=False)

    def take(self, request_id: str) -> V | None:
        """The value kept for `request_id`, forgotten now; None when there is none."""
        return self._kept.pop(request_id, None)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._kept
