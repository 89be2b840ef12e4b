"""The host tier: one fetch per adapter version however many requests want it at once,
least recently used adapters evicted beyond capacity, and never one a request still holds."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from actors.adapters.host_cache import AdapterHostCache
from cluster.request import GenerationRequest
from tetriserve.v1 import adapters_pb2


class FakeRemoteMethod:
    def __init__(self, function) -> None:
        self.function = function

    async def remote(self, *args):
        await asyncio.sleep(0.01)  # a round trip, during which other requests arrive
        return self.function(*args)


class FakeStore:
    """Serves every adapter version with one small file, and counts fetches."""

    def __init__(self) -> None:
        self.fetched: list[str] = []
        self.fetch = FakeRemoteMethod(self._fetch)

    def _fetch(self, request_bytes: bytes) -> bytes:
        request = adapters_pb2.FetchAdapterRequest.FromString(request_bytes)
        self.fetched.append(f"{request.name}@{request.version}")
        info = adapters_pb2.AdapterInfo(name=request.name, version=request.version)
        files = [adapters_pb2.AdapterFile(name="adapter_config.json", content=b"{}")]
        return adapters_pb2.FetchAdapterReply(info=info, files=files).SerializeToString()


class FakeEngine:
    """Records which adapters the engine holds."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[int, Path]] = {}
        self.removed: list[str] = []

    def add_adapter(self, key: str, lora_id: int, path: Path) -> None:
        self.held[key] = (lora_id, path)

    async def remove_adapter(self, key: str) -> None:
        self.removed.append(key)
        del self.held[key]
        await asyncio.sleep(0.01)  # a call to the engine's core, during which others run


def _request(name: str, version: int) -> GenerationRequest:
    return GenerationRequest(request_id=f"{name}-{version}", adapter=name, adapter_version=version)


def _cache(capacity: int) -> tuple[AdapterHostCache, FakeStore, FakeEngine]:
    store, engine = FakeStore(), FakeEngine()
    return AdapterHostCache(store, engine, "test", capacity), store, engine  # type: ignore[arg-type]


async def _run(cache: AdapterHostCache, request: GenerationRequest, seconds: float = 0.0) -> None:
    async with cache.holding(request):
        await asyncio.sleep(seconds)


def test_requests_for_one_version_fetch_it_once_and_hand_it_to_the_engine() -> None:
    cache, store, engine = _cache(capacity=4)

    async def run() -> None:
        await asyncio.gather(*(_run(cache, _request("sql", 3)) for _ in range(5)))

    asyncio.run(run())
    assert store.fetched == ["sql@3"]
    lora_id, folder = engine.held["sql@3"]
    assert lora_id == 3
    assert (folder / "adapter_config.json").read_bytes() == b"{}"


def test_a_base_model_request_touches_nothing() -> None:
    cache, store, engine = _cache(capacity=1)
    asyncio.run(_run(cache, GenerationRequest(request_id="plain")))
    assert store.fetched == [] and engine.held == {}


def test_beyond_capacity_the_least_recently_used_idle_adapter_leaves() -> None:
    cache, _, engine = _cache(capacity=2)

    async def run() -> None:
        await _run(cache, _request("a", 1))
        await _run(cache, _request("b", 2))
        await _run(cache, _request("a", 1))  # a is now the most recently used
        await _run(cache, _request("c", 3))

    asyncio.run(run())
    assert engine.removed == ["b@2"]
    assert cache.adapters == ["a@1", "c@3"]
    assert not engine.held.get("b@2")


def test_an_adapter_a_request_still_holds_is_not_evicted() -> None:
    cache, _, engine = _cache(capacity=1)

    async def run() -> None:
        long = asyncio.create_task(_run(cache, _request("a", 1), seconds=0.2))
        await asyncio.sleep(0.05)
        await _run(cache, _request("b", 2))  # a is in use: b leaves instead once done
        assert "a@1" in engine.held
        await long

    asyncio.run(run())
    assert engine.removed == ["b@2"]
    assert cache.adapters == ["a@1"]


def test_a_new_version_of_a_name_is_fetched_as_a_new_adapter() -> None:
    cache, store, _ = _cache(capacity=4)

    async def run() -> None:
        await _run(cache, _request("sql", 1))
        await _run(cache, _request("sql", 2))

    asyncio.run(run())
    assert store.fetched == ["sql@1", "sql@2"]


def test_evictions_that_run_at_once_take_each_adapter_once() -> None:
    cache, _, engine = _cache(capacity=4)

    async def run() -> None:
        for i in range(4):
            await _run(cache, _request(f"a{i}", i + 1))
        cache.capacity = 1  # three too many: the next two requests to end both evict
        await asyncio.gather(
            _run(cache, _request("a0", 1), 0.01), _run(cache, _request("a1", 2), 0.01)
        )

    asyncio.run(run())
    assert len(engine.removed) == len(set(engine.removed)) == 3
    assert len(cache.adapters) == 1


def test_a_new_cache_removes_the_folders_of_ended_processes(tmp_path, monkeypatch) -> None:
    import subprocess
    import tempfile

    from actors.adapters.host_cache import FOLDER_PREFIX

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ended = subprocess.Popen(["true"])  # a process that has ended and been reaped
    ended.wait()
    dead = tmp_path / f"{FOLDER_PREFIX}{ended.pid}-decode-0-abc"
    alive = tmp_path / f"{FOLDER_PREFIX}{os.getppid()}-prefill-0-def"
    for folder in (dead, alive):
        folder.mkdir()
        (folder / "adapter_config.json").write_text("{}")
    _cache(capacity=1)
    assert not dead.exists()
    assert alive.exists()
    own = [p for p in tmp_path.iterdir() if p.name.startswith(f"{FOLDER_PREFIX}{os.getpid()}-")]
    assert len(own) == 1 and own[0].is_dir()
