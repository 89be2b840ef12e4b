"""How the `tetriserve` commands join Ray: the cluster at RAY_ADDRESS, or a new local one.

Ray starts its worker processes at nice 15 (`RAY_worker_niceness`) so that its daemons stay
responsive; here every worker is on the serving path (the engines' actors, the ingress and
proxy that carry their tokens), and at nice 15 a busy machine's other processes took their
cores even while requests waited. A local cluster started here runs them at nice 0. A
cluster started with `ray start` takes the same setting from its environment; the engine
adapter also raises its own actor back to nice 0 where the OS allows.

A Ray job's entrypoint runs in a shell with the environment of the node's Ray processes,
so a local cluster started here has this interpreter's `bin/` (where the `tetriserve`
command is) first on its PATH: `ray job submit -- tetriserve ...` finds the command. A
cluster started with `ray start` needs it on the PATH of the shell that started it (an
activated virtual environment).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

WORKER_NICENESS_ENV = "RAY_worker_niceness"


def init_ray(**options: Any) -> None:
    """`ray.init(**options)`, with Ray's workers at normal priority if it starts a cluster."""
    import ray

    os.environ.setdefault(WORKER_NICENESS_ENV, "0")
    commands = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if commands not in path.split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([commands, path]) if path else commands
    ray.init(**options)
