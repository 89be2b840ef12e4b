"""Where the cores went during a benchmark run: CPU seconds per role, on this node.

`tetriserve bench workloads` wraps each workload run in `CpuProfile.measure()`: it reads
every process's CPU time (user + system) before and after, and charges the difference to
a role named from the process's title: the engines' workers and cores, tetriserve's actors,
the Serve proxy and ingress, vLLM's API server, the benchmark client (this process), the
Ray runtime. An engine process whose title does not say what it is (vLLM names its
processes once they run, and that name has been seen missing) takes its role from where it
sits in the process tree: a child of an engine's owner is an engine core, and a child of
an engine core is an engine worker. A process that starts during the run counts from
zero; one that ends during it is lost, which is why the benchmark stops nothing before the
window closes. Only this node is seen, so on a multi-node cluster the profile covers the
node the job runs on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import psutil

BENCHMARK_CLIENT = "benchmark client"
OTHER = "other"
# (substring of the process title, role), first match wins.
ROLES: tuple[tuple[str, str], ...] = (
    ("VLLM::Worker", "engine workers"),
    ("VLLM::EngineCore", "engine cores"),
    ("vllm.entrypoints.openai.api_server", "vLLM API server"),
    ("ray::ServingInstance", "serving instances"),
    ("OpenAIIngress", "Serve ingress"),
    ("ray::ProxyActor", "Serve proxy"),
    ("ray::GlobalScheduler", "global scheduler"),
    ("ray::SuperNICSwitch", "switch and memory nodes"),
    ("ray::MemoryNode", "switch and memory nodes"),
    ("ray::LoRAAdapterStore", "switch and memory nodes"),
    ("ray::", "Ray runtime"),
    ("ray/", "Ray runtime"),
)

ENGINE_OWNERS = ("serving instances", "vLLM API server")
# The role of an untitled engine process, from its parent's role.
ENGINE_CHILD_ROLES = dict.fromkeys(ENGINE_OWNERS, "engine cores") | {
    "engine cores": "engine workers"
}
# Helper processes of Python's multiprocessing that an engine owner also starts.
NOT_ENGINE_CHILDREN = ("resource_tracker", "forkserver")


class Proc(NamedTuple):
    title: str
    cpu_seconds: float  # so far, user + system
    parent: int = 0


# pid -> what a snapshot saw of it
Snapshot = dict[int, Proc]


def role_of(title: str, pid: int, client_pid: int) -> str:
    """The role of the process with this title; the benchmark's own process is the client."""
    if pid == client_pid:
        return BENCHMARK_CLIENT
    return next((role for needle, role in ROLES if needle in title), OTHER)


def snapshot_processes() -> Snapshot:
    """Every process's title and CPU seconds (user + system), as far as they can be read."""
    snapshot: Snapshot = {}
    for process in psutil.process_iter(["cmdline", "name", "cpu_times", "ppid"]):
        times = process.info["cpu_times"]
        if times is None:  # gone or not ours to read
            continue
        title = " ".join(process.info["cmdline"] or []) or (process.info["name"] or "")
        snapshot[process.pid] = Proc(title, times.user + times.system, process.info["ppid"] or 0)
    return snapshot


def roles_in(snapshot: Snapshot, client_pid: int) -> dict[int, str]:
    """The role of every process in the snapshot: from its title, or else, for an engine
    process, from its parent's role."""
    roles: dict[int, str] = {}

    def resolve(pid: int) -> str:
        if pid not in roles:
            proc = snapshot[pid]
            role = role_of(proc.title, pid, client_pid)
            untitled_child = role == OTHER and proc.parent in snapshot and proc.parent != pid
            if untitled_child and not any(n in proc.title for n in NOT_ENGINE_CHILDREN):
                role = ENGINE_CHILD_ROLES.get(resolve(proc.parent), OTHER)
            roles[pid] = role
        return roles[pid]

    for pid in snapshot:
        resolve(pid)
    return roles


def charge(before: Snapshot, after: Snapshot, client_pid: int) -> dict[str, float]:
    """CPU seconds per role between two snapshots, largest first, without empty roles."""
    roles = roles_in(after, client_pid)
    by_role: dict[str, float] = {}
    for pid, proc in after.items():
        earlier = before.get(pid)
        used = proc.cpu_seconds - (earlier.cpu_seconds if earlier else 0.0)
        if used > 0:
            by_role[roles[pid]] = by_role.get(roles[pid], 0.0) + used
    return dict(sorted(by_role.items(), key=lambda item: -item[1]))


@dataclass(slots=True)
class Window:
    """One measured interval: CPU seconds per role, and the cores' capacity over it."""

    by_role: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    cores: int = 1

    @property
    def capacity_seconds(self) -> float:
        return self.wall_seconds * self.cores

    def to_dict(self) -> dict[str, object]:
        return {
            "wall_seconds": self.wall_seconds,
            "cores": self.cores,
            "cpu_seconds": dict(self.by_role),
        }


@dataclass(slots=True)
class CpuProfile:
    """Measures windows; the snapshot source and the clock are swappable for tests."""

    snapshot: Callable[[], Snapshot] = snapshot_processes
    clock: Callable[[], float] = time.monotonic
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    client_pid: int = field(default_factory=os.getpid)

    @contextmanager
    def measure(self) -> Iterator[Window]:
        """A window that is filled in when the block ends (also when it raises)."""
        window = Window(cores=self.cores)
        before, started = self.snapshot(), self.clock()
        try:
            yield window
        finally:
            window.wall_seconds = self.clock() - started
            window.by_role = charge(before, self.snapshot(), self.client_pid)


def roles_in_order(windows: Iterable[Mapping[str, float]]) -> list[str]:
    """Every role seen, the most CPU first over all windows, "other" last."""
    totals: dict[str, float] = {}
    for by_role in windows:
        for role, seconds in by_role.items():
            totals[role] = totals.get(role, 0.0) + seconds
    ordered = sorted(totals, key=lambda role: -totals[role])
    return [role for role in ordered if role != OTHER] + ([OTHER] if OTHER in totals else [])


# workload -> system label -> its window
Profiles = Mapping[str, Mapping[str, Window]]


def to_markdown(profiles: Profiles) -> str:
    """One row per workload and system: CPU seconds per role, the total, and the share of
    the node's cores it kept busy over the run."""
    roles = roles_in_order(w.by_role for runs in profiles.values() for w in runs.values())
    header = ["workload", "system", "wall s", *roles, "total", "of capacity"]
    lines = [header, ["---", "---", *("---:" for _ in header[2:])]]
    for workload, runs in profiles.items():
        for system, window in runs.items():
            total = sum(window.by_role.values())
            share = total / window.capacity_seconds if window.capacity_seconds else 0.0
            cells = [f"{window.by_role.get(role, 0.0):.1f}" for role in roles]
            row = [workload, system, f"{window.wall_seconds:.1f}", *cells, f"{total:.1f}"]
            lines.append([*row, f"{share:.0%}"])
    return "\n".join("| " + " | ".join(line) + " |" for line in lines) + "\n"


def write_plot(profiles: Profiles, path: Path) -> Path:
    """Stacked bars of CPU seconds per role, one bar per workload and system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [(f"{w} {s}", window) for w, runs in profiles.items() for s, window in runs.items()]
    roles = roles_in_order(window.by_role for _, window in bars)
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(bars) + 1.5))
    colors = plt.get_cmap("tab20").colors
    _stack(ax, [label for label, _ in bars], [w.by_role for _, w in bars], roles, colors)
    ax.set_xlabel("CPU seconds during the run")
    ax.set_title("Where the cores went, per role", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _stack(
    ax: Any,
    labels: Sequence[str],
    rows: Sequence[Mapping[str, float]],
    roles: list[str],
    colors: Sequence[Any],
) -> None:
    left = [0.0] * len(rows)
    for i, role in enumerate(roles):
        widths = [row.get(role, 0.0) for row in rows]
        ax.barh(labels, widths, left=left, label=role, color=colors[i % len(colors)])
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.invert_yaxis()
