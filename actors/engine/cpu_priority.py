"""Idle CPU priority for an engine that only soaks up cores other engines leave free.

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
