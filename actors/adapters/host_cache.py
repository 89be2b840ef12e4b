"""The host tier: adapters' files on an instance's own machine, fetched from the adapter store.

An instance runs each request inside `AdapterHostCache.holding(request)`. The first request
for a version of an adapter fetches its files from the LoRAAdapterStore, writes them to a
folder of this instance's, and hands them to the engine (vLLM then loads them into a LoRA
slot when it schedules the request). Beyond `capacity` adapters, the least recently used
one that no running request holds leaves the engine and the disk. Hits, loads, load seconds
and evictions are counted per instance under the tier label `host`. The files live in a
folder named after this process (`tetriserve-adapters-PID-...` in the temp directory); Ray
kills an instance without letting it clean up, so each new cache first removes the folders
of processes that have ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil

from actors import metrics
from actors.adapters.adapter_store import materialize
from actors.engine.adapter import EngineAdapter
from cluster.request import GenerationRequest
from tetriserve.v1 import adapters_pb2

TIER = "host"
DEFAULT_CAPACITY = 32
FOLDER_PREFIX = "tetriserve-adapters-"


def _own_folder(instance_id: str) -> Path:
    """A new folder of this process's, once those of ended processes are gone."""
    for folder in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*"):
        pid = folder.name.removeprefix(FOLDER_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-{instance_id}-"))


class AdapterHostCache:
    def __init__(
        self, store: Any, engine: EngineAdapter, instance_id: str, capacity: int = DEFAULT_CAPACITY
    ) -> None:
        """`store`: the LoRAAdapterStore's actor handle."""
        self._store = store
        self._engine = engine
        self._instance_id = instance_id
        self.capacity = capacity
        self._root = _own_folder(instance_id)
        self._folders: OrderedDict[str, Path] = OrderedDict()  # adapter key → files; LRU first
        self._in_use: Counter[str] = Counter()
        self._fetching: dict[str, asyncio.Lock] = {}

    @property
    def adapters(self) -> list[str]:
        """The adapter keys (`NAME@VERSION`) held, least recently used first."""
        return list(self._folders)

    @contextlib.asynccontextmanager
    async def holding(self, request: GenerationRequest) -> AsyncIterator[None]:
        """The request's adapter in the engine for as long as the request runs."""
        key = request.adapter_key
        if key is None or request.adapter is None:
            yield
            return
        self._in_use[key] += 1  # first: from here on, no eviction takes it
        try:
            await self._ensure(key, request.adapter, request.adapter_version)
            yield
        finally:
            self._in_use[key] -= 1
            if not self._in_use[key]:
                del self._in_use[key]
            await self._evict_beyond_capacity()

    async def _ensure(self, key: str, name: str, version: int) -> None:
        if key in self._folders:
            self._folders.move_to_end(key)
            metrics.ADAPTER_HITS.labels(self._instance_id, TIER).inc()
            return
        lock = self._fetching.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self._folders:
                self._folders.move_to_end(key)
                return
            started = time.monotonic()
            request = adapters_pb2.FetchAdapterRequest(name=name, version=version)
            reply = await self._store.fetch.remote(request.SerializeToString())
            folder = await asyncio.to_thread(materialize, reply, self._root)
            self._engine.add_adapter(key, version, folder)
            self._folders[key] = folder
            metrics.ADAPTER_LOADS.labels(self._instance_id, TIER).inc()
            metrics.ADAPTER_LOAD_SECONDS.labels(self._instance_id, TIER).observe(
                time.monotonic() - started
            )
        self._fetching.pop(key, None)

    async def _evict_beyond_capacity(self) -> None:
        while len(self._folders) > self.capacity:
            key = next((key for key in self._folders if key not in self._in_use), None)
            if key is None:
                return  # every adapter held is in use
            folder = self._folders.pop(key)  # taken at once: no other eviction picks it
            await self._engine.remove_adapter(key)
            await asyncio.to_thread(shutil.rmtree, folder, True)
            metrics.ADAPTER_EVICTIONS.labels(self._instance_id, TIER).inc()
