"""How a checkpoint reaches every node that loads it, with no filesystem shared between
nodes. `CheckpointHolder`, an actor on the node where the deployment is built, hashes the
checkpoint directory's files (weights, tokenizer, adapters) at start, and hands them out,
read again from its disk, to whoever asks (`files`): nothing is kept in memory or in Ray's
object store while no node needs a copy. Every actor that loads the model (serving
instances and their engines, the ingress's tokenizer, the ChunkSize profiler, the adapter
store) asks `local_dir`: on the holder's node, the directory where it lies; on any other
node, a node-local cache under `$TETRISERVE_HOME/models/by-hash/DIGEST`, written once per
node (the first actor there fetches the files, the others wait for it and reuse them), and
refused unless its content hashes to the digest the holder computed at start.
"""

from __future__ import annotations

import contextlib
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
# A holder that dies while it answers is started again by Ray, and the read is asked again.
FETCH_RETRIES = 3


@dataclass(frozen=True)
class ShippedModel:
    """A checkpoint as every node can reach it."""

    directory: str  # where it lies on the builder's node (also the model's name in KV keys)
    node: str  # the builder's node tag
    digest: str  # sha256 over every file's relative path and bytes
    holder: Any  # the CheckpointHolder's handle: it hands out the files


def _files_in(directory: Path) -> list[Path]:
    return [path for path in sorted(directory.rglob("*")) if path.is_file()]


def read_files(directory: Path) -> dict[str, bytes]:
    """Every file under `directory`, by its path relative to it."""
    return {str(path.relative_to(directory)): path.read_bytes() for path in _files_in(directory)}


def _combined(hashes: dict[str, bytes]) -> str:
    """One digest over each file's relative path and the sha256 of its bytes."""
    digest = hashlib.sha256()
    for name in sorted(hashes):
        digest.update(name.encode() + b"\0")
        digest.update(hashes[name])
    return digest.hexdigest()


def content_digest(files: dict[str, bytes]) -> str:
    return _combined({name: hashlib.sha256(content).digest() for name, content in files.items()})


def directory_digest(directory: Path) -> str:
    """`content_digest` of the directory's files, read a block at a time."""
    hashes = {}
    for path in _files_in(directory):
        with path.open("rb") as handle:
            hashes[str(path.relative_to(directory))] = hashlib.file_digest(
                handle, "sha256"
            ).digest()
    return _combined(hashes)


class CheckpointHolder:
    """Hands out a checkpoint from the node that has its directory. Every actor given the
    ShippedModel holds a handle to it. The digest is taken once, at start: a directory
    changed since then yields copies that `local_dir` refuses."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.digest = directory_digest(self.directory)

    def model(self, handle: Any) -> ShippedModel:
        """The checkpoint as every node reaches it; `handle` is this actor's own."""
        return ShippedModel(str(self.directory), node_tag(), self.digest, handle)

    def files(self) -> dict[str, bytes]:
        """Every file of the checkpoint, read from this node's disk now."""
        return read_files(self.directory)


def hold_here(directory: Path, **actor_options: Any) -> ShippedModel:
    """The checkpoint at `directory`, handed out by a holder pinned to this node (where the
    directory is). `actor_options` are Ray's (a name, restarts, a lifetime); without them
    the holder lives as long as the ShippedModel is held: `bench workloads` profiles
    through one before its deployment starts."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    options = {"num_cpus": 0, "max_concurrency": 1, **actor_options}
    holder = (
        ray.remote(CheckpointHolder)
        .options(scheduling_strategy=here, **options)
        .remote(str(directory))
    )
    return ray.get(holder.model.remote(holder))


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

    call = model.holder.files.options(max_task_retries=FETCH_RETRIES)
    files: dict[str, bytes] = ray.get(call.remote())
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
