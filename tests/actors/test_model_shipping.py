"""A checkpoint reaches a node that lacks it through Ray's object store
(actors/model_shipping.py): byte for byte, once per node however many actors ask at once, into
the node's cache named by its content hash; the node that has the directory uses it in place;
a copy whose content is not what the hash says is refused; an object lost with its holder is
asked of the holder again."""

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
    local_dir,
    read_files,
    rebase,
    ship,
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
    model = ship(checkpoint)
    assert local_dir(model) == checkpoint
    assert rebase(checkpoint / "adapters" / "r8", model) == checkpoint / "adapters" / "r8"


def test_another_node_gets_a_byte_identical_copy_once(
    local_ray: None, checkpoint: Path, home: Path
) -> None:
    model = elsewhere(ship(checkpoint))
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
    model = dataclasses.replace(elsewhere(ship(checkpoint)), digest="0" * 64)
    with pytest.raises(ValueError, match="is not"):
        local_dir(model)
    assert not (home / "models" / "by-hash" / model.digest).exists()


def test_an_object_lost_with_its_holder_is_asked_of_the_holder_again(
    local_ray: None, checkpoint: Path, home: Path
) -> None:
    holder = (
        ray.remote(CheckpointHolder)
        .options(name=HOLDER_NAME, max_restarts=1, num_cpus=0)
        .remote(str(checkpoint))
    )
    model = elsewhere(ray.get(holder.model.remote(holder)))
    ray.kill(holder, no_restart=False)  # started again: the object it owned is gone
    assert local_dir(model) == home / "models" / "by-hash" / model.digest
    assert read_files(local_dir(model))["model.safetensors"] == bytes(range(256)) * 4096
    ray.kill(holder)
