"""The benchmark's CPU profile: roles from process titles, charging windows, the report."""

from __future__ import annotations

import os

import pytest

from deploy import cpu_profile
from deploy.cpu_profile import CpuProfile, Proc, Window, charge, role_of

CLIENT_PID = 10
INGRESS = "ray::ServeReplica:tetriserve-bench:OpenAIIngress.perform_graceful_shutdown"


def test_roles_from_titles() -> None:
    assert role_of("VLLM::Worker", 1, CLIENT_PID) == "engine workers"
    assert role_of(INGRESS, 2, CLIENT_PID) == "Serve ingress"
    assert role_of("ray::ServeController", 3, CLIENT_PID) == "Ray runtime"
    assert role_of("python -m vllm.entrypoints.openai.api_server --port 1", 4, CLIENT_PID) == (
        "vLLM API server"
    )
    assert role_of("bash", 5, CLIENT_PID) == cpu_profile.OTHER
    assert role_of("anything at all", CLIENT_PID, CLIENT_PID) == cpu_profile.BENCHMARK_CLIENT


def test_charge_counts_new_processes_from_zero_and_drops_idle_ones() -> None:
    before = {
        1: Proc("VLLM::Worker", 5.0),
        2: Proc("VLLM::Worker", 1.0),
        3: Proc("ray::MemoryNode", 2.0),
    }
    after = {
        1: Proc("VLLM::Worker", 7.5),  # 2.5 s used
        2: Proc("VLLM::Worker", 1.0),  # idle
        4: Proc("VLLM::Worker", 0.5),  # started during the window
        5: Proc(INGRESS, 3.0),  # started during the window
        # 3 ended during the window: its time is lost
    }
    by_role = charge(before, after, CLIENT_PID)
    assert by_role == {"Serve ingress": 3.0, "engine workers": 3.0}


def test_charge_orders_roles_by_seconds() -> None:
    after = {
        1: Proc("ray::ProxyActor", 1.0),
        2: Proc("VLLM::EngineCore", 4.0),
        3: Proc("bash", 2.0),
    }
    assert list(charge({}, after, CLIENT_PID)) == ["engine cores", "other", "Serve proxy"]


SPAWNED = "python -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5)"


def test_untitled_engine_processes_take_their_role_from_the_process_tree() -> None:
    after = {
        1: Proc("ray::ServingInstance.generate", 1.0, parent=100),
        2: Proc(SPAWNED, 2.0, parent=1),  # the engine core, before (or without) its title
        3: Proc(SPAWNED, 4.0, parent=2),  # its worker
        4: Proc("python -c from multiprocessing.resource_tracker import main", 0.5, parent=1),
        5: Proc("python -m vllm.entrypoints.openai.api_server", 1.0, parent=100),
        6: Proc("python", 8.0, parent=5),  # a title that says nothing at all
        7: Proc("VLLM::Worker", 16.0, parent=6),
        8: Proc(SPAWNED, 32.0, parent=7),  # a worker's own child is not an engine process
    }
    assert charge({}, after, CLIENT_PID) == {
        "other": 32.5,
        "engine workers": 20.0,
        "engine cores": 10.0,
        "vLLM API server": 1.0,
        "serving instances": 1.0,
    }


class FakeProcessTable:
    """Snapshots and a clock that advance by hand."""

    def __init__(self) -> None:
        self.table: dict[int, Proc] = {1: Proc("VLLM::Worker", 0.0)}
        self.now = 100.0

    def snapshot(self) -> dict[int, Proc]:
        return dict(self.table)

    def clock(self) -> float:
        return self.now


def _profile(fake: FakeProcessTable) -> CpuProfile:
    return CpuProfile(snapshot=fake.snapshot, clock=fake.clock, cores=2, client_pid=CLIENT_PID)


def test_measure_fills_the_window_when_the_block_ends() -> None:
    fake = FakeProcessTable()
    with _profile(fake).measure() as window:
        assert window.by_role == {}
        fake.table[1] = Proc("VLLM::Worker", 6.0)
        fake.table[CLIENT_PID] = Proc("python bench", 1.0)
        fake.now += 4.0
    assert window.wall_seconds == 4.0
    assert window.capacity_seconds == 8.0
    assert window.by_role == {"engine workers": 6.0, cpu_profile.BENCHMARK_CLIENT: 1.0}


def test_measure_fills_the_window_when_the_block_raises() -> None:
    fake = FakeProcessTable()
    with pytest.raises(RuntimeError), _profile(fake).measure() as window:
        fake.table[1] = Proc("VLLM::Worker", 1.5)
        fake.now += 1.0
        raise RuntimeError("client failed")
    assert window.by_role == {"engine workers": 1.5}


def test_real_snapshot_sees_this_process_work() -> None:
    before = cpu_profile.snapshot_processes()[os.getpid()].cpu_seconds
    sum(i * i for i in range(2_000_000))
    title, after, parent = cpu_profile.snapshot_processes()[os.getpid()]
    assert after > before
    assert parent == os.getppid()
    assert "python" in title or "pytest" in title


def _profiles() -> dict[str, dict[str, Window]]:
    return {
        "LPHD": {
            "tetriserve": Window({"engine workers": 8.0, "Serve ingress": 5.0}, 16.0, 2),
            "vllm": Window({"engine workers": 24.0, "other": 1.0}, 15.0, 2),
        }
    }


def test_markdown_has_a_column_per_role_and_the_share_of_capacity() -> None:
    lines = cpu_profile.to_markdown(_profiles()).splitlines()
    assert lines[0] == (
        "| workload | system | wall s | engine workers | Serve ingress | other | total | "
        "of capacity |"
    )
    assert lines[2] == "| LPHD | tetriserve | 16.0 | 8.0 | 5.0 | 0.0 | 13.0 | 41% |"
    assert lines[3] == "| LPHD | vllm | 15.0 | 24.0 | 0.0 | 1.0 | 25.0 | 83% |"


def test_plot_is_written(tmp_path) -> None:
    path = cpu_profile.write_plot(_profiles(), tmp_path / "cpu.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
