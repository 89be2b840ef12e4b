"""A vLLM plugin that bounds how long an idle engine keeps a core busy.

vLLM's engine-core and worker processes pass every step through shared-memory queues whose
readers busy-poll (`sched_yield` in a loop) for one second after the last message before
they sleep on a socket. On a machine whose few cores carry several engines, the actors and
the Serve proxy, that second of polling after every request is CPU taken from whatever
runs next: the prefill engine's worker polls through the whole decode that follows it, and
the decode engine's through the next request's prefill and KV transfer.

A worker is the exception: between two steps of a burst it waits only for its engine
core's bookkeeping (a few milliseconds), so in vLLM's worker processes the readers poll at
least `WORKER_BUSY_POLL_MS`; at 1 ms a worker fell asleep between every two steps and had
to be woken through the socket. Measured on the tiny model at concurrency 1 (`bench
latency`, 3 interleaved rounds of 20 requests each, 2 runs): mean end-to-end latency 1.67x
and 1.72x of plain vLLM's with every reader at 1 ms, 1.30x and 1.30x with the workers' at
20 ms (mean time per output token 1.49-1.74x against 1.13-1.27x).

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
import multiprocessing
import os

ENV_VAR = "TETRISERVE_VLLM_BUSY_POLL_MS"
_PATCHED_FLAG = "_tetriserve_busy_poll_s"
# How often a sleeping reader looks again, whether or not a wake-up came (vLLM: 5,000 ms).
RECHECK_MS = 5
# A worker waits between steps only for its engine core's bookkeeping (a few milliseconds):
# it polls at least this long, so that it does not sleep between two steps of a burst.
WORKER_BUSY_POLL_MS = 20
WORKER_PROCESS_PREFIX = "VllmWorker"  # vLLM's name for its worker processes
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
    if multiprocessing.current_process().name.startswith(WORKER_PROCESS_PREFIX):
        busy_poll_s = max(busy_poll_s, WORKER_BUSY_POLL_MS / 1000)
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
