"""A decode instance's view of its own work: what its admission and its load report see.

Each request a decode instance holds is a `DecodeProgress`: its prompt, its predicted output
(the dispatcher's lower bound), whether that decode is heavy, and how many tokens the decode
made so far. Decode admission sees the running ones as `RunningDecode`s (`view`); the load
report the decode dispatchers choose by (`decode_load`) counts free KV, heavy and light
decodes, and the decode tokens still predicted, for the running and the waiting ones. The
decode role in actors/ and the simulator in cluster/sim/ both report through here.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from cluster.decode_admission import RunningDecode
from cluster.placement import InstanceLoad


@dataclass(slots=True)
class DecodeProgress:
    prompt_tokens: int
    predicted_output: int
    heavy: bool
    generated: int = 0  # tokens this decode made so far

    @property
    def work_left(self) -> int:
        """Decode tokens still to make, as predicted: at least the next one."""
        return max(self.predicted_output - self.generated, 1)

    @property
    def kv_tokens(self) -> int:
        return self.prompt_tokens + self.generated

    def view(self, request_id: str) -> RunningDecode:
        """As decode admission sees it."""
        return RunningDecode(
            request_id,
            kv_tokens=self.kv_tokens,
            predicted_remaining=max(self.predicted_output - self.generated, 0),
        )


def decode_load(
    load: InstanceLoad,
    running: Collection[DecodeProgress],
    waiting_work: int,
    capacity_tokens: int,
) -> InstanceLoad:
    """`load` (its queue and batch, as the instance counts them) with the figures the
    decode dispatchers choose by: the KV tokens `running` leaves free of `capacity_tokens`,
    its heavy and light decodes, and the decode tokens still predicted for it and for the
    requests that wait for admission (`waiting_work`, the sum of their `work_left`)."""
    used = sum(decode.kv_tokens for decode in running)
    load.free_kv_tokens = max(capacity_tokens - used, 0)
    load.heavy_decodes = sum(decode.heavy for decode in running)
    load.light_decodes = len(running) - load.heavy_decodes
    load.predicted_tokens = waiting_work + sum(decode.work_left for decode in running)
    return load
