"""A vLLM plugin that bounds how long an idle engine keeps a core busy.

vLLM's engine-core and worker processes pass every step through shared-memory queues whose
readers busy-poll (`sched_yield` in a loop) for one second after the last message before
they sleep on a socket. On a machine whose few cores carry several engines, the actors and
the Serve proxy, that second of polling after every request is CPU taken from whatever
runs next: the prefill engine's worker polls through the whole decode that follows it, and
the decode engine's through the next request's prefill and KV transfer.

The engine adapter (actors/engine/adapter.py) sets `TETRISERVE_VLLM_BUSY_POLL_MS` for the engines
it starts (EngineConfig.busy_poll_ms); this plugin, loaded in every vLLM process through the
`vllm.general_plugins` entry point, makes that the readers' polling time. A sleeping reader
is woken by a message on a PUB socket whose one-message high-water mark can drop a wake-up
when a reader goes to sleep just as the writer writes; vLLM's readers recover by looking
again every 5 s, which at a 1 s polling time is rare, and at a short one is not; here a
sleeping reader looks again every `RECHECK_MS`. Without the variable (plain vLLM in the
benchmarks, for instance) vLLM keeps its own defaults.
"""

from __future__ import annotations

import functools
import os

ENV_VAR = "TETRISERVE_VLLM_BUSY_POLL_MS"
_PATCHED_FLAG = "_tetriserve_busy_poll_s"
# How often a sleeping reader looks again, whether or not a wake-up came (vLLM: 5,000 ms).
RECHECK_MS = 5
# SpinCondition(is_reader, context, notify_address, busy_loop_s=1): its fourth argument.
_BUSY_LOOP_POSITION = 3


def apply() -> None:
    """The `vllm.general_plugins` entry point; safe to call more than once."""
    value = os.environ.get(ENV_VAR)
    if value is None:
        return
    try:
        from vllm.distributed.device_communicators import shm_broadcast
    except ImportError:  # a vLLM without shared-memory queues polls nothing
        return
    spin_condition = shm_broadcast.SpinCondition
    busy_poll_s = float(value) / 1000
    # Read by the readers at every wait, so setting the module's constant is enough.
    shm_broadcast.SHM_READER_RECHECK_INTERVAL_MS = RECHECK_MS
    current = spin_condition.__init__
    if getattr(current, _PATCHED_FLAG, None) == busy_poll_s:
        return
    original = getattr(current, "__wrapped__", current)

    @functools.wraps(original)
    def __init__(self, *args, **kwargs) -> None:
        if len(args) <= _BUSY_LOOP_POSITION:  # not given positionally
            kwargs.setdefault("busy_loop_s", busy_poll_s)
        original(self, *args, **kwargs)

    setattr(__init__, _PATCHED_FLAG, busy_poll_s)
    spin_condition.__init__ = __init__
