"""The cold-start log plugin: one JSON line per adapter load while its variable is set,
nothing without it, and the loads of a time window read back."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from vllm.lora.worker_manager import WorkerLoRAManager

from actors.engine import lora_load_log


@dataclass
class FakeLoRARequest:
    lora_name: str


def _fake_load(self: object, lora_request: FakeLoRARequest) -> str:
    time.sleep(0.01)
    return f"weights of {lora_request.lora_name}"


@pytest.fixture
def fake_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM's loader replaced by a fake, and the plugin's mark undone afterwards."""
    monkeypatch.setattr(WorkerLoRAManager, "_load_adapter", _fake_load)
    monkeypatch.setattr(WorkerLoRAManager, lora_load_log._PATCHED_FLAG, False, raising=False)


def test_each_load_is_logged_with_its_seconds(
    fake_loads: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = tmp_path / "loads.jsonl"
    monkeypatch.setenv(lora_load_log.ENV_VAR, str(log))
    lora_load_log.apply()
    lora_load_log.apply()  # a second plugin load does not wrap twice
    start = time.time()
    assert WorkerLoRAManager._load_adapter(None, FakeLoRARequest("a001@2")) == "weights of a001@2"
    WorkerLoRAManager._load_adapter(None, FakeLoRARequest("a002@3"))
    loads = lora_load_log.loads_between(log, start, time.time())
    assert [load["adapter"] for load in loads] == ["a001@2", "a002@3"]
    assert all(load["seconds"] >= 0.01 for load in loads)
    assert lora_load_log.loads_between(log, 0, start - 1) == []


def test_without_the_variable_nothing_changes(
    fake_loads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(lora_load_log.ENV_VAR, raising=False)
    lora_load_log.apply()
    assert WorkerLoRAManager._load_adapter is _fake_load
