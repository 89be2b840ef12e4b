"""LoRAAdapterStore: the one place that knows every adapter and serves its weights.

Instances start with no adapter files of their own; the first request for an adapter makes
the instance fetch it from here (`fetch`) and load it into its engine. Messages are the
`tetriserve.v1.adapters` protos, serialized.
"""

from __future__ import annotations

from pathlib import Path

from actors import cpu_priority
from actors.model_shipping import ShippedModel, rebase
from cluster.checkpoint import AdapterInfo
from tetriserve.v1 import adapters_pb2

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


class UnknownAdapter(KeyError):
    """No adapter of that name is in the store."""


class LoRAAdapterStore:
    def __init__(self, adapters: dict[str, AdapterInfo], model: ShippedModel | None = None) -> None:
        """`model`: the checkpoint the adapters are part of, as this node finds it (their
        paths are the builder's); None: the paths are this node's."""
        cpu_priority.yield_to_engines()
        self._adapters = dict(adapters)
        self._model = model
        self.fetches = 0

    def _path(self, adapter: AdapterInfo) -> Path:
        return adapter.path if self._model is None else rebase(adapter.path, self._model)

    def _info(self, adapter: AdapterInfo) -> adapters_pb2.AdapterInfo:
        size = sum((self._path(adapter) / name).stat().st_size for name in ADAPTER_FILES)
        return adapters_pb2.AdapterInfo(
            name=adapter.name,
            rank=adapter.rank,
            target_modules=list(adapter.target_modules),
            size_bytes=size,
        )

    def list_adapters(self) -> bytes:
        infos = [self._info(a) for _, a in sorted(self._adapters.items())]
        return adapters_pb2.ListAdaptersReply(adapters=infos).SerializeToString()

    def fetch(self, request_bytes: bytes) -> bytes:
        name = adapters_pb2.FetchAdapterRequest.FromString(request_bytes).name
        adapter = self._adapters.get(name)
        if adapter is None:
            raise UnknownAdapter(name)
        self.fetches += 1
        files = [
            adapters_pb2.AdapterFile(name=f, content=(self._path(adapter) / f).read_bytes())
            for f in ADAPTER_FILES
        ]
        reply = adapters_pb2.FetchAdapterReply(info=self._info(adapter), files=files)
        return reply.SerializeToString()


def materialize(reply_bytes: bytes, root: Path) -> Path:
    """Writes a fetched adapter under `root`/NAME and returns that folder."""
    reply = adapters_pb2.FetchAdapterReply.FromString(reply_bytes)
    target = root / reply.info.name
    target.mkdir(parents=True, exist_ok=True)
    for file in reply.files:
        if Path(file.name).name != file.name:
            raise ValueError(f"adapter file name {file.name!r} is not a plain name")
        (target / file.name).write_bytes(file.content)
    return target
