"""What a deployment holds for its requests, read from its actors: the scheduler's in-flight
count, each serving instance's queued and running requests, and each memory node's active
leases and pages. The fault suite compares it with the idle deployment's (`idle_counts`)."""

from __future__ import annotations

import time
from typing import Any

import ray

from actors.wire import load_from_wire
from tetriserve.v1 import scheduling_pb2

NAMESPACE = "tetriserve-test"


def _actors(prefix: str) -> dict[str, Any]:
    names = (a["name"] for a in ray.util.list_named_actors(all_namespaces=True))
    return {
        name: ray.get_actor(name, namespace=NAMESPACE)
        for name in sorted(names)
        if name.startswith(prefix)
    }


def cluster_counts() -> dict[str, int]:
    scheduler = ray.get_actor("global-scheduler", namespace=NAMESPACE)
    counts = {"in_flight": ray.get(scheduler.stats.remote())["in_flight"]}
    for prefix in ("prefill-", "decode-"):
        for name, instance in _actors(prefix).items():
            report = scheduling_pb2.LoadReport.FromString(ray.get(instance.load_report.remote()))
            load = load_from_wire(report)
            counts[f"{name} queued"] = load.queued
            counts[f"{name} running"] = load.running
    for name, node in _actors("memory-").items():
        stats = ray.get(node.stats.remote())
        counts[f"{name} leases"] = stats["leases_active"]
        counts[f"{name} pages"] = stats["pages_in_use"]
    return counts


def back_to(baseline: dict[str, int], within_s: float) -> tuple[dict[str, int], float]:
    """Waits until the deployment holds what `baseline` says, at most `within_s`; returns
    the last counts read and the seconds waited."""
    start = time.monotonic()
    while True:
        counts = cluster_counts()
        waited = time.monotonic() - start
        if counts == baseline or waited > within_s:
            return counts, waited
        time.sleep(0.1)


def idle_counts(within_s: float = 10.0) -> dict[str, int]:
    """The deployment's counts once it holds nothing for any request: no request in
    flight, queued or running, and no lease. A test's earlier requests may still be letting
    go (their owner reports them finished after the client has its answer), so this waits
    for that, at most `within_s`, rather than taking a busy moment for the baseline."""
    start = time.monotonic()
    while True:
        counts = cluster_counts()
        held = {k: n for k, n in counts.items() if n and not k.endswith(" pages")}
        if not held:
            return counts
        assert time.monotonic() - start < within_s, f"not idle after {within_s} s: {held}"
        time.sleep(0.1)
