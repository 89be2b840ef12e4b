"""An engine's processes: they run at normal priority though Ray starts its workers at
nice 15, and they end with the process that started them however it ended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psutil

from actors.engine import vllm_exit_with_owner

# A process at nice 15 (as Ray starts its workers), its threads brought back to nice 0.
RESTORE = """
import os, threading, time
from actors import cpu_priority
os.nice(15)
threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
restored = cpu_priority.restore_normal()
import psutil
nices = {os.getpriority(os.PRIO_PROCESS, t.id) for t in psutil.Process().threads()}
print(restored, sorted(nices))
"""

# An owner that names itself as the engine's owner and starts a child that loads the
# plugin, as vLLM's engine core does; it prints the child's pid and waits to be killed.
OWNER = """
import os, subprocess, sys, time
os.environ["{env}"] = str(os.getpid())
child = subprocess.Popen([sys.executable, "-c",
    "from actors.engine import vllm_exit_with_owner as p; p.apply(); import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


def _python(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, **kwargs
    )


def test_restore_normal_brings_every_thread_of_a_niced_process_back_to_nice_0() -> None:
    done = _python(RESTORE)
    out, _ = done.communicate(timeout=60)
    restored, nices = out.split(" ", 1)
    if os.geteuid() == 0:
        assert (restored, nices.strip()) == ("True", "[0]")
    else:  # without CAP_SYS_NICE the OS refuses, and the call says so
        assert restored == "False"


def test_an_engine_process_exits_once_its_owner_is_killed() -> None:
    owner = _python(OWNER.format(env=vllm_exit_with_owner.ENV_VAR))
    assert owner.stdout is not None
    child = psutil.Process(int(owner.stdout.readline()))
    time.sleep(0.5)
    assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE
    owner.send_signal(signal.SIGKILL)
    owner.wait(timeout=10)
    gone, _ = psutil.wait_procs([child], timeout=10)
    assert gone, "the engine process outlived its owner"


def test_without_an_owner_the_plugin_watches_nothing(monkeypatch) -> None:
    monkeypatch.delenv(vllm_exit_with_owner.ENV_VAR, raising=False)
    before = {t.name for t in threading.enumerate()}
    vllm_exit_with_owner.apply()
    after = {t.name for t in threading.enumerate()}
    assert "exit-with-owner" not in after - before
