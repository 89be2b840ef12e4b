"""LoRAAdapterStore: the one owner of which adapters are loaded, and of their weights.

The front door asks it which version of an adapter a request is for (`resolve`), and
passes on `/v1/load_lora_adapter` and `/v1/unload_lora_adapter` (`load`, `unload`).
Instances fetch an adapter's files from here the first time a request needs that version
(`fetch`, actors/adapters/host_cache.py). A load is checked first (cluster/adapter_check.py)
and its files are read into the store then, so a folder changed afterwards changes nothing
that is served. Every load gets a new version: an adapter unloaded and loaded again under
the same name is a new adapter to the instances, their engines and the KV pages.
Messages are the `tetriserve.v1.adapters` protos, serialized.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from actors import cpu_priority
from actors.model_shipping import ShippedModel, local_dir, rebase
from cluster.adapter_check import ADAPTER_WEIGHTS, AdapterRejected, check_adapter, projection_shapes
from cluster.checkpoint import ADAPTERS_DIR, AdapterInfo
from tetriserve.v1 import adapters_pb2

ADAPTER_FILES = ("adapter_config.json", ADAPTER_WEIGHTS)


class UnknownAdapter(KeyError):
    """No adapter of that name (or of that version) is loaded."""

    def __str__(self) -> str:
        return f"The lora adapter '{self.args[0]}' cannot be found."


class AdapterNameTaken(AdapterRejected):
    """A load under a name that is already loaded."""


@dataclass(frozen=True, slots=True)
class _Loaded:
    info: adapters_pb2.AdapterInfo
    files: dict[str, bytes]


class LoRAAdapterStore:
    def __init__(
        self,
        model: ShippedModel | Path,
        adapters: dict[str, AdapterInfo] | None = None,
        lora_root: Path | None = None,
        max_rank: int = 64,
    ) -> None:
        """`model`: the base checkpoint, shipped (the preloaded `adapters`' paths are then
        the builder's, found again on this node) or as a folder on this node. `lora_root`:
        the folder on this node that run-time loads must lie under; by default the model's
        `adapters/`. `max_rank`: the engines' maximum LoRA rank."""
        cpu_priority.yield_to_engines()
        self._model = model if isinstance(model, ShippedModel) else None
        model_dir = local_dir(model) if isinstance(model, ShippedModel) else Path(model)
        self.lora_root = Path(lora_root) if lora_root is not None else model_dir / ADAPTERS_DIR
        self._base_shapes = projection_shapes(model_dir)
        self._max_rank = max_rank
        self._loaded: dict[str, _Loaded] = {}
        self._last_version = 0
        self.fetches = 0
        for _, adapter in sorted((adapters or {}).items()):
            self._take(adapter, self._here(adapter.path))

    def _here(self, path: Path) -> Path:
        return path if self._model is None else rebase(path, self._model)

    def _take(self, adapter: AdapterInfo, folder: Path) -> adapters_pb2.AdapterInfo:
        files = {name: (folder / name).read_bytes() for name in ADAPTER_FILES}
        self._last_version += 1
        info = adapters_pb2.AdapterInfo(
            name=adapter.name,
            rank=adapter.rank,
            target_modules=list(adapter.target_modules),
            size_bytes=sum(len(content) for content in files.values()),
            version=self._last_version,
        )
        self._loaded[adapter.name] = _Loaded(info, files)
        return info

    def _get(self, name: str) -> _Loaded:
        loaded = self._loaded.get(name)
        if loaded is None:
            raise UnknownAdapter(name)
        return loaded

    def list_adapters(self) -> bytes:
        infos = [loaded.info for _, loaded in sorted(self._loaded.items())]
        return adapters_pb2.ListAdaptersReply(adapters=infos).SerializeToString()

    def resolve(self, request_bytes: bytes) -> bytes:
        """The loaded adapter of that name (its version above all); UnknownAdapter if none."""
        name = adapters_pb2.ResolveAdapterRequest.FromString(request_bytes).name
        return self._get(name).info.SerializeToString()

    def load(self, request_bytes: bytes) -> bytes:
        """Checks and takes in an adapter (AdapterRejected says why not); its AdapterInfo."""
        request = adapters_pb2.LoadLoraAdapterRequest.FromString(request_bytes)
        if not request.lora_name or not request.lora_path:
            raise AdapterRejected("Both 'lora_name' and 'lora_path' must be provided.")
        if request.lora_name in self._loaded:
            raise AdapterNameTaken(
                f"The lora adapter '{request.lora_name}' has already been loaded."
            )
        info = check_adapter(
            request.lora_name,
            Path(request.lora_path),
            self.lora_root,
            self._base_shapes,
            self._max_rank,
        )
        return self._take(info, info.path).SerializeToString()  # the path, resolved

    def unload(self, request_bytes: bytes) -> bytes:
        """Forgets an adapter: requests already given its version go on; UnknownAdapter if
        none of that name is loaded."""
        name = adapters_pb2.UnloadLoraAdapterRequest.FromString(request_bytes).lora_name
        if not name:
            raise AdapterRejected("'lora_name' must be provided.")
        self._get(name)
        del self._loaded[name]
        message = f"Success: LoRA adapter '{name}' removed successfully."
        return adapters_pb2.LoraAdapterReply(message=message).SerializeToString()

    def fetch(self, request_bytes: bytes) -> bytes:
        """The files of one version of an adapter; UnknownAdapter once it is unloaded."""
        request = adapters_pb2.FetchAdapterRequest.FromString(request_bytes)
        loaded = self._get(request.name)
        if request.version and request.version != loaded.info.version:
            raise UnknownAdapter(f"{request.name} (version {request.version})")
        self.fetches += 1
        files = [adapters_pb2.AdapterFile(name=n, content=c) for n, c in loaded.files.items()]
        return adapters_pb2.FetchAdapterReply(info=loaded.info, files=files).SerializeToString()


def materialize(reply_bytes: bytes, root: Path) -> Path:
    """Writes a fetched adapter under `root`/NAME@VERSION and returns that folder."""
    reply = adapters_pb2.FetchAdapterReply.FromString(reply_bytes)
    target = root / f"{reply.info.name}@{reply.info.version}"
    target.mkdir(parents=True, exist_ok=True)
    for file in reply.files:
        if Path(file.name).name != file.name:
            raise ValueError(f"adapter file name {file.name!r} is not a plain name")
        (target / file.name).write_bytes(file.content)
    return target
