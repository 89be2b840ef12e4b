"""The janitor of an engine's shared memory: what the engine leaves in /dev/shm goes once the
process that owns the engine has ended, however it ended.

vLLM's engine core and its workers talk through shared-memory queues (`psm_*`, hundreds of
MiB reserved each), and joblib's loky names semaphores after the process that made them
(`sem.loky-<pid>-*`). A clean vLLM shutdown unlinks the queues; but Ray ends an actor by
killing its whole process group, the engine's processes with it, so nothing in them runs
on the way out, and every stopped deployment and every killed instance left six such files
behind.

`watch(owner_pid)`, called by the engine adapter before it starts an engine, starts this
module as a process out of that kill's reach: in a session of its own (as Ray's job
supervisor starts its own watcher), and started by a process that ends at once, since Ray
also kills an actor's children. It notes the files that the owner's descendants map or
named after themselves: every `SCAN_EVERY_S` while they change (an engine starting), less
and less often while they do not (`Scans`), up to every `SCAN_AT_MOST_EVERY_S`, since a
scan reads every process's entry in /proc. It looks every `OWNER_CHECK_S` whether the owner
still runs; once the owner has ended and its descendants are gone, it unlinks those files
and exits. It touches nothing else in /dev/shm
(the memory nodes' arenas and the core board have their own owners).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

SHARED_MEMORY = Path("/dev/shm")
ENGINE_QUEUES = f"{SHARED_MEMORY}/psm_"  # multiprocessing.shared_memory's names, as vLLM's
SCAN_EVERY_S = 2.0
SCAN_AT_MOST_EVERY_S = 32.0
OWNER_CHECK_S = 1.0
CHECK_EVERY_S = 0.2
ENGINES_EXIT_WITHIN_S = 30.0
_watched: set[int] = set()
log = logging.getLogger(__name__)


def watch(owner_pid: int) -> None:
    """Starts the janitor for the engines of `owner_pid` (once per owner). One that cannot
    start is logged, and the engine runs all the same."""
    if owner_pid in _watched or not SHARED_MEMORY.is_dir():
        return
    _watched.add(owner_pid)
    started = subprocess.run(
        [sys.executable, __file__, "--detach", str(owner_pid)],  # stdlib and psutil only
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if started.returncode != 0:
        log.warning("no janitor for the engine's shared memory: %s", started.stderr.strip())


def _detach(owner_pid: int) -> None:
    subprocess.Popen(
        [sys.executable, __file__, str(owner_pid)],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def engine_files(processes: Iterable[psutil.Process]) -> set[Path]:
    """The queues these processes map and the loky semaphores named after them."""
    found: set[Path] = set()
    for process in processes:
        with contextlib.suppress(psutil.Error, OSError):
            for line in Path(f"/proc/{process.pid}/maps").read_text().splitlines():
                fields = line.split()
                if len(fields) >= 6 and fields[5].startswith(ENGINE_QUEUES):
                    found.add(Path(fields[5]))
            found.update(SHARED_MEMORY.glob(f"sem.loky-{process.pid}-*"))
    return found


def _alive(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    return False


class Scans:
    """When the next scan is due: `SCAN_EVERY_S` after one that found something new, twice
    the last pause (up to `SCAN_AT_MOST_EVERY_S`) after one that found nothing new."""

    def __init__(self, now: float) -> None:
        self.pause_s = SCAN_EVERY_S
        self.due = now

    def scanned(self, now: float, found_new: bool) -> None:
        self.pause_s = SCAN_EVERY_S if found_new else min(2 * self.pause_s, SCAN_AT_MOST_EVERY_S)
        self.due = now + self.pause_s


def clean_up_after(owner_pid: int) -> None:
    """Notes the engine's files while `owner_pid` runs, and unlinks them once it and its
    descendants have ended."""
    try:
        owner = psutil.Process(owner_pid)
    except psutil.NoSuchProcess:
        return
    engines: dict[int, psutil.Process] = {}
    files: set[Path] = set()
    scans = Scans(time.monotonic())
    while _alive(owner):
        if time.monotonic() >= scans.due:
            known = (set(engines), len(files))
            with contextlib.suppress(psutil.Error):
                engines.update((child.pid, child) for child in owner.children(recursive=True))
            engines.pop(os.getpid(), None)  # the owner started this process too
            files |= engine_files(process for process in engines.values() if _alive(process))
            scans.scanned(time.monotonic(), found_new=known != (set(engines), len(files)))
        time.sleep(OWNER_CHECK_S)
    deadline = time.monotonic() + ENGINES_EXIT_WITHIN_S
    while any(_alive(process) for process in engines.values()) and time.monotonic() < deadline:
        time.sleep(CHECK_EVERY_S)
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


if __name__ == "__main__":
    if sys.argv[1] == "--detach":
        _detach(int(sys.argv[2]))
    else:
        clean_up_after(int(sys.argv[1]))
