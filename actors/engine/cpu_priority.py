"""CPU priority of the engines: normal for every engine, idle for a backfill one.

Ray starts its worker processes at nice 15 (`RAY_worker_niceness`), so that its own
daemons stay responsive; an engine started by an actor would inherit that and, on a busy
machine, lose its cores to any process at normal priority (the Ray daemons, a benchmark
client, the host's own work), even while requests wait for it. `restore_normal()` puts the
actor that is about to start an engine back at nice 0 where the OS allows it (it needs
CAP_SYS_NICE, which root has; elsewhere the cluster is started with
`RAY_worker_niceness=0`, as `tetriserve serve` does for its local cluster).

A backfill decode engine shares a prefill engine's cores (deploy/app_builder.py). Its
processes (vLLM's engine core and workers, children of the instance actor) run under
SCHED_IDLE: the kernel gives them a core only when nothing of normal priority wants it, so a
prefill that arrives takes its core at once, and the decode runs through every gap between
prefills. The actor itself keeps its priority: its work is the token stream. Threads made
later inherit the policy of the thread that makes them. Where SCHED_IDLE does not exist,
the lowest nice value stands in for it.
"""

from __future__ import annotations

import contextlib
import os

import psutil

LOWEST_NICE = 19
NORMAL_NICE = 0


def restore_normal() -> bool:
    """Nice 0 for every thread of this process (Linux keeps a nice value per thread) and so
    for the engine processes it starts after; False when the OS refused."""
    restored = True
    for thread in psutil.Process().threads():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            if os.getpriority(os.PRIO_PROCESS, thread.id) <= NORMAL_NICE:
                continue
            try:
                os.setpriority(os.PRIO_PROCESS, thread.id, NORMAL_NICE)
            except PermissionError:
                restored = False
    return restored


def lower_children(pid: int | None = None) -> int:
    """Puts every thread of every descendant of `pid` (default: this process) at idle
    priority; returns how many threads it changed."""
    changed = 0
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            for thread in child.threads():
                with contextlib.suppress(OSError):
                    _lower(thread.id)
                    changed += 1
    return changed


def _lower(tid: int) -> None:
    if hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.setpriority(os.PRIO_PROCESS, tid, LOWEST_NICE)


def is_idle(tid: int) -> bool:
    if hasattr(os, "SCHED_IDLE"):
        return os.sched_getscheduler(tid) == os.SCHED_IDLE
    return os.getpriority(os.PRIO_PROCESS, tid) == LOWEST_NICE
