"""CPU priority of the engines: normal, whatever Ray's worker processes run at.

Ray starts its worker processes at nice 15 (`RAY_worker_niceness`), so that its own
daemons stay responsive; an engine started by an actor would inherit that and, on a busy
machine, lose its cores to any process at normal priority (the Ray daemons, a benchmark
client, the host's own work), even while requests wait for it. `restore_normal()` puts the
actor that is about to start an engine back at nice 0 where the OS allows it (it needs
CAP_SYS_NICE, which root has; elsewhere the cluster is started with
`RAY_worker_niceness=0`, as `tetriserve serve` does for its local cluster).

Engines that share cores do so at step boundaries (actors/engine/core_share.py), not
through priorities: a thread preempted inside a step holds up its engine's whole step.
"""

from __future__ import annotations

import contextlib
import os

import psutil

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
