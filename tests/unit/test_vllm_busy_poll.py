"""The busy-poll plugin: vLLM's shared-memory queue readers poll for the time the engine
config gives, only where the variable is set, and the engine adapter sets it."""

from __future__ import annotations

import inspect
import multiprocessing
import os
from pathlib import Path

import pytest
from vllm.distributed.device_communicators import shm_broadcast

from actors.engine import vllm_busy_poll
from actors.engine.adapter import engine_args
from cluster.config import EngineConfig

VLLM_RECHECK_MS = 5000


class FakeSpinCondition:
    """Stands in for vLLM's SpinCondition (same signature), without its sockets."""

    def __init__(self, is_reader, context, notify_address, busy_loop_s: float = 1) -> None:
        self.busy_loop_s = busy_loop_s


@pytest.fixture
def fake_spin_condition(monkeypatch: pytest.MonkeyPatch) -> type[FakeSpinCondition]:
    monkeypatch.setattr(FakeSpinCondition, "__init__", FakeSpinCondition.__init__)
    monkeypatch.setattr(shm_broadcast, "SpinCondition", FakeSpinCondition)
    # vLLM's own value (an engine started earlier in this process may have set another).
    monkeypatch.setattr(shm_broadcast, "SHM_READER_RECHECK_INTERVAL_MS", VLLM_RECHECK_MS)
    return FakeSpinCondition


def reader(cls: type, **kwargs) -> FakeSpinCondition:
    return cls(is_reader=True, context=None, notify_address="inproc://unused", **kwargs)


def test_vllm_spin_condition_still_takes_busy_loop_s_after_three_arguments() -> None:
    parameters = list(inspect.signature(shm_broadcast.SpinCondition.__init__).parameters)
    assert parameters[1:5] == ["is_reader", "context", "notify_address", "busy_loop_s"]


def test_without_the_variable_vllm_keeps_its_default(
    fake_spin_condition: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(vllm_busy_poll.ENV_VAR, raising=False)
    vllm_busy_poll.apply()
    assert reader(fake_spin_condition).busy_loop_s == 1
    assert shm_broadcast.SHM_READER_RECHECK_INTERVAL_MS == VLLM_RECHECK_MS


def test_the_variable_sets_the_readers_polling_time(
    fake_spin_condition: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(vllm_busy_poll.ENV_VAR, "10")
    vllm_busy_poll.apply()
    vllm_busy_poll.apply()  # twice: still one wrapper, the same value
    assert reader(fake_spin_condition).busy_loop_s == pytest.approx(0.010)
    # A sleeping reader looks again soon: a lost wake-up costs milliseconds, not 5 s.
    assert shm_broadcast.SHM_READER_RECHECK_INTERVAL_MS == vllm_busy_poll.RECHECK_MS
    assert reader(fake_spin_condition, busy_loop_s=0.5).busy_loop_s == 0.5  # explicit wins
    assert fake_spin_condition(True, None, "inproc://unused").busy_loop_s == pytest.approx(0.010)
    assert fake_spin_condition(True, None, "inproc://unused", 0.25).busy_loop_s == 0.25


def test_a_new_value_replaces_the_old_one(
    fake_spin_condition: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(vllm_busy_poll.ENV_VAR, "10")
    vllm_busy_poll.apply()
    monkeypatch.setenv(vllm_busy_poll.ENV_VAR, "0")
    vllm_busy_poll.apply()
    assert reader(fake_spin_condition).busy_loop_s == 0


def test_engine_args_hand_the_configured_time_to_the_engine_processes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(vllm_busy_poll.ENV_VAR, raising=False)
    engine_args(EngineConfig(model_dir=tmp_path, device="cpu", busy_poll_ms=25))
    assert os.environ[vllm_busy_poll.ENV_VAR] == "25"


def test_a_worker_polls_long_enough_to_stay_awake_between_two_steps(
    fake_spin_condition: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In vLLM's worker process the readers poll at least WORKER_BUSY_POLL_MS (it waits
    only for its engine core's bookkeeping); elsewhere, the configured time."""
    monkeypatch.setenv(vllm_busy_poll.ENV_VAR, "1")
    worker = f"{vllm_busy_poll.WORKER_PROCESS_PREFIX}-0"
    monkeypatch.setattr(multiprocessing.current_process(), "name", worker)
    vllm_busy_poll.apply()
    assert reader(fake_spin_condition).busy_loop_s == pytest.approx(
        vllm_busy_poll.WORKER_BUSY_POLL_MS / 1000
    )
    monkeypatch.setattr(multiprocessing.current_process(), "name", "EngineCore")
    vllm_busy_poll.apply()
    assert reader(fake_spin_condition).busy_loop_s == pytest.approx(0.001)
