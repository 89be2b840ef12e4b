"""A vLLM plugin that ends an engine's processes when the process that started them ends.

vLLM runs an engine as child processes of the process that creates it: the engine core,
and the core's workers. An instance actor killed outright (`ray.kill`, `ray stop --force`,
the node's OOM killer) gives them no chance to shut down, and they were left running,
polling their queues and holding their KV cache, for as long as the machine ran.

The engine adapter (actors/engine/adapter.py) names its own process in
`TETRISERVE_ENGINE_OWNER_PID` before it starts an engine; this plugin, loaded in every
vLLM process through the `vllm.general_plugins` entry point, makes each process under it
watch its parent once a second and exit as soon as the parent is gone (the child is then
re-parented). The engine core's exit ends its workers the same way. Without the variable
(plain vLLM in the benchmarks, for instance) it does nothing.
"""

from __future__ import annotations

import os
import threading
import time

ENV_VAR = "TETRISERVE_ENGINE_OWNER_PID"
CHECK_EVERY_S = 1.0
EXIT_STATUS = 70
_watching_in: int | None = None  # the pid whose watcher runs (a forked child has none)


def apply() -> None:
    """The `vllm.general_plugins` entry point; safe to call more than once."""
    global _watching_in
    owner = os.environ.get(ENV_VAR)
    if owner is None or int(owner) == os.getpid() or _watching_in == os.getpid():
        return
    _watching_in = os.getpid()
    parent = os.getppid()
    watcher = threading.Thread(
        target=_exit_when_orphaned, args=(parent,), name="exit-with-owner", daemon=True
    )
    watcher.start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(CHECK_EVERY_S)
    os._exit(EXIT_STATUS)
