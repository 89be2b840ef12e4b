"""An engine's shared memory goes once its owner has ended, however it ended: here the
owner's whole process group is killed, engine included, as Ray ends an actor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from actors.engine import shm_janitor

# An engine process, as vLLM's: a queue it created (kept from the resource tracker, which
# the kill ends too) and a semaphore named as loky names them; it prints their paths.
ENGINE = """
import os, time
from multiprocessing import resource_tracker, shared_memory
queue = shared_memory.SharedMemory(create=True, size=4096)
resource_tracker.unregister(queue._name, "shared_memory")
semaphore = f"/dev/shm/sem.loky-{os.getpid()}-test"
open(semaphore, "wb").close()
print(f"/dev/shm/{queue.name}", semaphore, flush=True)
time.sleep(120)
"""

# The owner: the leader of its process group, as Ray starts an actor; it starts the
# janitor for itself and then its engine, passes on the engine's paths and waits.
OWNER = """
import os, subprocess, sys, time
from actors.engine import shm_janitor
shm_janitor.watch(os.getpid())
engine = subprocess.Popen([sys.executable, "-c", {engine!r}], stdout=subprocess.PIPE, text=True)
print(engine.stdout.readline().strip(), flush=True)
time.sleep(120)
"""


def test_an_engines_shared_memory_goes_once_its_owners_group_is_killed() -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER.format(engine=ENGINE)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert owner.stdout is not None
    left = [Path(path) for path in owner.stdout.readline().split()]
    assert len(left) == 2 and all(path.exists() for path in left)
    time.sleep(2 * shm_janitor.SCAN_EVERY_S + 1)  # the janitor has seen the engine
    os.killpg(owner.pid, signal.SIGKILL)
    owner.wait(timeout=10)
    deadline = time.monotonic() + 3 * shm_janitor.SCAN_EVERY_S + 5
    while any(path.exists() for path in left) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [path for path in left if path.exists()] == []


def test_the_janitor_notes_only_the_engines_queues_and_semaphores(tmp_path: Path) -> None:
    engine = subprocess.Popen([sys.executable, "-c", ENGINE], stdout=subprocess.PIPE, text=True)
    assert engine.stdout is not None
    try:
        queue, semaphore = (Path(path) for path in engine.stdout.readline().split())
        assert shm_janitor.engine_files([psutil.Process(engine.pid)]) == {queue, semaphore}
        assert shm_janitor.engine_files([psutil.Process()]) == set()  # none of its own
    finally:
        engine.kill()
        engine.wait()
        for path in (queue, semaphore):
            path.unlink(missing_ok=True)


def test_scans_back_off_while_nothing_new_turns_up_and_come_back_when_something_does() -> None:
    scans = shm_janitor.Scans(now=0.0)
    assert scans.due == 0.0  # the first scan at once
    scans.scanned(now=0.0, found_new=True)
    assert scans.due == shm_janitor.SCAN_EVERY_S
    pauses = []
    now = scans.due
    for _ in range(6):
        scans.scanned(now, found_new=False)
        pauses.append(scans.due - now)
        now = scans.due
    assert pauses == [4.0, 8.0, 16.0, 32.0, 32.0, 32.0]
    assert pauses[-1] == shm_janitor.SCAN_AT_MOST_EVERY_S
    scans.scanned(now, found_new=True)  # an engine started again: back to short pauses
    assert scans.due - now == shm_janitor.SCAN_EVERY_S
