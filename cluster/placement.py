"""Where work goes: the load view of instances and the placement policies over it.

The global scheduler places a request on a prefill instance; the decode dispatcher on the
prefill instance places it on a decode instance. Both choose over `InstanceLoad`s through a
`Placement` policy; the simple least-loaded policy is the default, and the research policies
(power-of-two over predicted memory, heavy:light ratio) plug in through the same seam.
"""

from __future__ import annotations

from collections.abc import Mapping
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

    @property
    def outstanding(self) -> int:
        return self.queued + self.running


class Placement(Protocol):
    def choose(self, loads: Mapping[str, InstanceLoad]) -> str | None:
        """The instance to use, or None when there is none to choose from."""
        ...


class LeastLoaded:
    """Fewest outstanding requests; ties go to the instance with the most free KV."""

    def choose(self, loads: Mapping[str, InstanceLoad]) -> str | None:
        if not loads:
            return None
        best = min(loads.values(), key=_least_loaded_order)
        return best.instance_id


def _least_loaded_order(load: InstanceLoad) -> tuple[int, int, str]:
    return (load.outstanding, -load.free_kv_tokens, load.instance_id)
