"""How the `tetriserve` commands join Ray: the cluster at RAY_ADDRESS, or a new local one.

Ray starts its worker processes at nice 15 (`RAY_worker_niceness`) so that its daemons stay
responsive; here every worker is on the serving path (the engines' actors, the ingress and
proxy that carry their tokens), and at nice 15 a busy machine's other processes took their
cores even while requests waited. A local cluster started here runs them at nice 0. A
cluster started with `ray start` takes the same setting from its environment; the engine
adapter also raises its own actor back to nice 0 where the OS allows.
"""

from __future__ import annotations

import os
from typing import Any

WORKER_NICENESS_ENV = "RAY_worker_niceness"


def init_ray(**options: Any) -> None:
    """`ray.init(**options)`, with Ray's workers at normal priority if it starts a cluster."""
    import ray

    os.environ.setdefault(WORKER_NICENESS_ENV, "0")
    ray.init(**options)
