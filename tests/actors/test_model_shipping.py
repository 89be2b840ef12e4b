"""A checkpoint reaches a node that lacks it from its holder (actors/model_shipping.py):
byte for byte, once per node however many actors ask at once, into the node's cache named
by its content hash; the node that has the directory uses it in place; a copy whose content
is not what the hash says is refused, a checkpoint changed since its holder started
included; a holder started again hands out the same files."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import ray

from actors.model_shipping import (
    COMPLETE,
    HOLDER_NAME,
    CheckpointHolder,
    ShippedModel,
    content_digest,
    directory_digest,
    hold_here,
    local_dir,
    read_files,
    rebase,
)

pytestmark = pytest.mark.actors


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    directory = tmp_path / "model"
    (directory / "adapters" / "r8").mkdir(parents=True)
    (directory / "config.json").write_text('{"hidden_size": 64}')
    (directory / "model.safetensors").write_bytes(bytes(range(256)) * 4096)
    (directory / "adapters" / "r8" / "adapter_config.json").write_text('{"r": 8}')
    return directory


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TETRISERVE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def elsewhere(model: ShippedModel) -> ShippedModel:
    """The model as an actor on another node sees it: not the holder's node."""
    return dataclasses.replace(model, node="another-node")


def test_the_holders_node_uses_the_directory_in_place(local_ray: None, checkpoint: Path) -> None:
    model = hold_here(checkpoint)
    assert local_dir(model) == checkpoint
    assert rebase(checkpoint / "adapters" / "r8", model) == checkpoint / "adapters" / "r8"


def test_another_node_gets_a_byte_identical_copy_once(
    local_ray: None, checkpoint: Path, home: Path
) -> None:
    model = elsewhere(hold_here(checkpoint))
    with ThreadPoolExecutor(4) as pool:
        found = set(pool.map(lambda _: local_dir(model), range(4)))
    (copy,) = found
    assert copy == home / "models" / "by-hash" / model.digest
    assert read_files(copy) == {**read_files(checkpoint), COMPLETE: f"{model.digest}\n".encode()}
    cached_at = (copy / COMPLETE).stat().st_mtime_ns
    assert local_dir(model) == copy and (copy / COMPLETE).stat().st_mtime_ns == cached_at
    adapter = rebase(checkpoint / "adapters" / "r8", model)
    assert adapter == copy / "adapters" / "r8" and (adapter / "adapter_config.json").exists()


def test_a_copy_that_is_not_what_its_hash_names_is_refused(
    local_ray: None, checkpoint: Path, home: Path
) -> None:
    model = dataclasses.replace(elsewhere(hold_here(checkpoint)), digest="0" * 64)
    with pytest.raises(ValueError, match="is not"):
        local_dir(model)
    assert not (home / "models" / "by-hash" / model.digest).exists()


def test_a_checkpoint_changed_since_its_holder_started_is_refused(
    local_ray: None, checkpoint: Path, home: Path
) -> None:
    model = elsewhere(hold_here(checkpoint))
    (checkpoint / "config.json").write_text('{"hidden_size": 128}')
    with pytest.raises(ValueError, match="is not"):
        local_dir(model)
    assert not (home / "models" / "by-hash" / model.digest).exists()


def test_the_digest_read_a_block_at_a_time_is_the_digest_of_the_files(checkpoint: Path) -> None:
    before = directory_digest(checkpoint)
    assert before == content_digest(read_files(checkpoint))
    (checkpoint / "config.json").write_text('{"hidden_size": 128}')
    assert directory_digest(checkpoint) != before


def test_a_holder_started_again_hands_out_the_same_files(
    local_ray: None, checkpoint: Path, home: Path
) -> None:
    holder = (
        ray.remote(CheckpointHolder)
        .options(name=HOLDER_NAME, max_restarts=1, num_cpus=0)
        .remote(str(checkpoint))
    )
    model = elsewhere(ray.get(holder.model.remote(holder)))
    ray.kill(holder, no_restart=False)  # its process dies; Ray starts it again
    assert local_dir(model) == home / "models" / "by-hash" / model.digest
    assert read_files(local_dir(model))["model.safetensors"] == bytes(range(256)) * 4096
    ray.kill(holder)
