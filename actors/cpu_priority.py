"""CPU priority: the engines at normal priority, the rest of the serving path below them.

Ray starts its worker processes at nice 15 (`RAY_worker_niceness`), so that its own
daemons stay responsive; an engine started by an actor would inherit that and, on a busy
machine, lose its cores to any process at normal priority (the Ray daemons, a benchmark
client, the host's own work), even while requests wait for it. `restore_normal()` puts the
actor that is about to start an engine back at nice 0 where the OS allows it (it needs
CAP_SYS_NICE, which root has; elsewhere the cluster is started with
`RAY_worker_niceness=0`, as `tetriserve serve` does for its local cluster).

Every other process of the serving path (the actors that relay tokens to and from an
engine, the ingress, the scheduler, the switch, the memory nodes, the adapter store) calls
`yield_to_engines()` once it is set up, and runs at nice SERVING_PATH_NICE. Where they share
cores with the engines, an engine's thread preempted inside a step holds up the whole step
(its other threads wait at the step's barriers), while a relay a few milliseconds late only
delays one message. Measured on 2 cores (small model, 48 sampled requests at 4/s, two
interleaved pairs): mean end-to-end latency 23.4 and 23.8 s with every process at nice 0,
21.7 and 20.1 s with these at nice 10; output 171-172 against 183-191 tokens/s. Raising
one's own nice value needs no privilege.

Engines that share cores (actors/engine/core_share.py) keep to this order: the prefill
engine at normal priority; the decode engine's threads on its own core at idle priority,
below everything else, while the prefill engine is busy, and at normal priority while it is
idle; and the decode on the prefill's core only while the prefill engine is idle.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import psutil

NORMAL_NICE = 0
SERVING_PATH_NICE = 10


def restore_normal() -> bool:
    """Nice 0 for every thread of this process (Linux keeps a nice value per thread) and so
    for the engine processes it starts after; False when the OS refused."""
    return _move_threads(NORMAL_NICE, lower=True)


def yield_to_engines() -> None:
    """In a Ray actor: every thread of its process at SERVING_PATH_NICE, unless already
    below it (threads started later inherit it from the thread that starts them); engine
    processes that it started before keep their own priority. Elsewhere (a test that
    builds an actor's class in its own process), nothing."""
    if _in_actor():
        _move_threads(SERVING_PATH_NICE, lower=False)


def threads_on_cores(cores: list[int]) -> list[int]:
    """The ids of this process's threads bound to `cores` (a yielding engine's own cores,
    actors/engine/core_share.py)."""
    bound = set(cores)
    ids: list[int] = []

    def collect(thread_id: int) -> None:
        if os.sched_getaffinity(thread_id) <= bound:
            ids.append(thread_id)

    _for_each_thread(collect)
    return ids


def set_idle(thread_ids: list[int], idle: bool) -> bool:
    """Idle priority (SCHED_IDLE: any thread at normal priority that wants the core takes it
    at once) or normal priority for these threads; threads they start later inherit it.
    Lowering one's priority needs no privilege; going back to normal from idle needs
    CAP_SYS_NICE (root has it): False when the OS refused."""
    policy = os.SCHED_IDLE if idle else os.SCHED_OTHER
    allowed = True
    for thread_id in thread_ids:
        try:
            os.sched_setscheduler(thread_id, policy, os.sched_param(0))
        except PermissionError:
            allowed = False
        except ProcessLookupError:  # the thread ended meanwhile
            pass
    return allowed


def _move_threads(nice: int, lower: bool) -> bool:
    """Every thread of this process on the wrong side of `nice` (above it when `lower`,
    below it otherwise) set to `nice`; False when the OS refused any."""
    moved = True

    def renice(thread_id: int) -> None:
        nonlocal moved
        now = os.getpriority(os.PRIO_PROCESS, thread_id)
        if (now > nice) if lower else (now < nice):
            try:
                os.setpriority(os.PRIO_PROCESS, thread_id, nice)
            except PermissionError:
                moved = False

    _for_each_thread(renice)
    return moved


def _for_each_thread(action: Callable[[int], None]) -> None:
    """`action(thread id)` for every thread of this process; a thread that ended meanwhile
    is skipped."""
    for thread in psutil.Process().threads():
        with contextlib.suppress(OSError):
            action(thread.id)


def _in_actor() -> bool:
    import ray

    return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None
