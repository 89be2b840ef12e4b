"""How a checkpoint reaches every node that loads it, with no filesystem shared between
nodes. `CheckpointHolder`, an actor on the node where the deployment is built, reads the
checkpoint directory's files (weights, tokenizer, adapters) and puts them into Ray's object
store once (`ship`), named by a hash of their content; the object lives as long as the
holder does. Every actor that loads the model (serving instances and their engines, the
ingress's tokenizer, the ChunkSize profiler, the adapter store) asks `local_dir`: on the
holder's node, the directory where it lies; on any other node, a node-local cache under
`$TETRISERVE_HOME/models/by-hash/DIGEST`, written once per node (the first actor there
fetches the files, the others wait for it and reuse them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.node_address import node_tag
from cluster.model_factory import tetriserve_home

log = logging.getLogger(__name__)

COMPLETE = ".complete"  # written last: a cache directory without it is not used


@dataclass(frozen=True)
class ShippedModel:
    """A checkpoint as every node can reach it."""

    directory: str  # where it lies on the builder's node (also the model's name in KV keys)
    node: str  # the builder's node tag
    digest: str  # sha256 over every file's relative path and bytes
    files: Any  # ObjectRef of {relative path: bytes}
    holder: Any = None  # the CheckpointHolder that owns `files`; held, it keeps it alive


def read_files(directory: Path) -> dict[str, bytes]:
    """Every file under `directory`, by its path relative to it."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def content_digest(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def ship(directory: Path) -> ShippedModel:
    """The checkpoint at `directory` (on this node) in the object store, owned by this
    process."""
    import ray

    files = read_files(directory)
    return ShippedModel(str(directory), node_tag(), content_digest(files), ray.put(files))


class CheckpointHolder:
    """Owns the shipped checkpoint (placed on the node that has the directory). Every
    actor given the ShippedModel holds a handle to it, which keeps it alive. Started again
    after its process died, it ships the files anew, and `local_dir` asks it for them when
    the object it was given is gone."""

    def __init__(self, directory: str) -> None:
        self._model = ship(Path(directory))

    def model(self, handle: Any) -> ShippedModel:
        """The shipped checkpoint; `handle` is this actor's own, handed on with it."""
        return dataclasses.replace(self._model, holder=handle)


HOLDER_NAME = "checkpoint"


def local_dir(model: ShippedModel) -> Path:
    """The checkpoint's directory on this node: where it lies, on the builder's node; the
    node's cached copy elsewhere, fetched from the object store the first time."""
    if model.node == node_tag():
        return Path(model.directory)
    target = tetriserve_home() / "models" / "by-hash" / model.digest
    if (target / COMPLETE).exists():
        return target
    with _locked(target.with_name(f"{model.digest}.lock")):
        if not (target / COMPLETE).exists():
            _fetch(model, target)
    return target


def rebase(path: Path, model: ShippedModel) -> Path:
    """A path inside the checkpoint as the builder named it, on this node."""
    return local_dir(model) / Path(path).relative_to(model.directory)


def _fetch(model: ShippedModel, target: Path) -> None:
    import ray

    try:
        files: dict[str, bytes] = ray.get(model.files)
    except ray.exceptions.RayError:  # its holder was started again: ask it for the new copy
        log.warning("checkpoint %s: the object is gone; asking its holder", model.directory)
        files = ray.get(ray.get(model.holder.model.remote(model.holder)).files)
    if content_digest(files) != model.digest:
        raise ValueError(f"the checkpoint fetched for {model.directory} is not {model.digest}")
    staging = Path(tempfile.mkdtemp(prefix=f"{model.digest}.", dir=target.parent))
    for name, content in files.items():
        path = staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (staging / COMPLETE).write_text(model.digest + "\n")
    shutil.rmtree(target, ignore_errors=True)  # a copy an earlier fetch left half-written
    staging.rename(target)
    log.info("checkpoint %s cached on this node at %s", model.directory, target)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One process of this node at a time (the others wait)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
