"""Run-time adapters in the store: what a load checks, what it refuses and why, and how
loading, unloading and loading again change what is resolved and fetched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from actors.adapters.adapter_store import (
    AdapterNameTaken,
    LoRAAdapterStore,
    UnknownAdapter,
    materialize,
)
from cluster.adapter_check import AdapterRejected
from cluster.checkpoint import inspect_checkpoint
from tetriserve.v1 import adapters_pb2


def _load(store: LoRAAdapterStore, name: str, path: Path | str) -> adapters_pb2.AdapterInfo:
    request = adapters_pb2.LoadLoraAdapterRequest(lora_name=name, lora_path=str(path))
    return adapters_pb2.AdapterInfo.FromString(store.load(request.SerializeToString()))


def _unload(store: LoRAAdapterStore, name: str) -> str:
    request = adapters_pb2.UnloadLoraAdapterRequest(lora_name=name).SerializeToString()
    return adapters_pb2.LoraAdapterReply.FromString(store.unload(request)).message


def _resolve(store: LoRAAdapterStore, name: str) -> int:
    request = adapters_pb2.ResolveAdapterRequest(name=name).SerializeToString()
    return adapters_pb2.AdapterInfo.FromString(store.resolve(request)).version


def _fetch(store: LoRAAdapterStore, name: str, version: int) -> bytes:
    request = adapters_pb2.FetchAdapterRequest(name=name, version=version)
    return store.fetch(request.SerializeToString())


@pytest.fixture(autouse=True)
def _normal_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store lowers its own process's priority; here that would be pytest's."""
    monkeypatch.setattr("actors.cpu_priority.yield_to_engines", lambda: None)


@pytest.fixture
def root(tiny_model: Path, tmp_path: Path) -> Path:
    """An adapter root holding copies of the tiny model's adapters."""
    target = tmp_path / "adapters"
    shutil.copytree(tiny_model / "adapters", target)
    return target


@pytest.fixture
def store(tiny_model: Path, root: Path) -> LoRAAdapterStore:
    return LoRAAdapterStore(tiny_model, lora_root=root, max_rank=32)


def test_the_checkpoints_own_adapters_are_loaded_at_start(tiny_model: Path) -> None:
    checkpoint = inspect_checkpoint(tiny_model)
    store = LoRAAdapterStore(tiny_model, checkpoint.adapters)
    listed = adapters_pb2.ListAdaptersReply.FromString(store.list_adapters()).adapters
    assert [a.name for a in listed] == sorted(checkpoint.adapters)
    assert len({a.version for a in listed}) == len(listed)
    assert store.lora_root == tiny_model / "adapters"


def test_a_loaded_adapter_resolves_and_its_files_are_those_on_disk(
    store: LoRAAdapterStore, root: Path, tmp_path: Path
) -> None:
    info = _load(store, "sql", root / "r16")
    assert (info.name, info.rank) == ("sql", 16)
    assert _resolve(store, "sql") == info.version > 0
    folder = materialize(_fetch(store, "sql", info.version), tmp_path / "host")
    assert folder.name == f"sql@{info.version}"
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (folder / name).read_bytes() == (root / "r16" / name).read_bytes()


def test_an_adapter_written_after_start_up_can_be_loaded(
    store: LoRAAdapterStore, root: Path
) -> None:
    shutil.copytree(root / "r8", root / "late")
    assert _load(store, "late", root / "late").rank == 8


def test_unloading_refuses_the_name_and_its_version_and_a_reload_is_a_new_version(
    store: LoRAAdapterStore, root: Path
) -> None:
    first = _load(store, "sql", root / "r8").version
    assert _unload(store, "sql") == "Success: LoRA adapter 'sql' removed successfully."
    with pytest.raises(UnknownAdapter, match="cannot be found"):
        _resolve(store, "sql")
    with pytest.raises(UnknownAdapter):
        _fetch(store, "sql", first)
    with pytest.raises(UnknownAdapter):
        _unload(store, "sql")
    second = _load(store, "sql", root / "r16").version
    assert second > first
    with pytest.raises(UnknownAdapter):
        _fetch(store, "sql", first)  # the old version's files are gone with it
    assert _fetch(store, "sql", second)


def _bad_shape(root: Path) -> Path:
    """A copy of r8 whose first lora_B weight has one output row too many."""
    target = root / "bad-shape"
    shutil.copytree(root / "r8", target)
    weights = load_file(str(target / "adapter_model.safetensors"))
    key = sorted(k for k in weights if k.endswith("lora_B.weight"))[0]
    weights[key] = np.zeros((weights[key].shape[0] + 1, 8), np.float32)
    save_file(weights, str(target / "adapter_model.safetensors"))
    return target


def _rank_mismatch(root: Path) -> Path:
    """A copy of r8 whose config says rank 16."""
    target = root / "says-16"
    shutil.copytree(root / "r8", target)
    config = json.loads((target / "adapter_config.json").read_text())
    (target / "adapter_config.json").write_text(json.dumps(config | {"r": 16}))
    return target


def _no_weights(root: Path) -> Path:
    target = root / "no-weights"
    shutil.copytree(root / "r8", target)
    (target / "adapter_model.safetensors").unlink()
    return target


def _escaping_link(root: Path) -> Path:
    outside = root.parent / "outside"
    shutil.copytree(root / "r8", outside)
    (root / "link").symlink_to(outside)
    return root / "link"


@pytest.mark.parametrize(
    ("make_path", "name", "reason"),
    [
        (lambda root: root / "missing", "x", "is not a directory"),
        (_no_weights, "x", "holds no weights"),
        (lambda root: root / "r64", "x", "rank 64, above the engine's maximum LoRA rank 32"),
        (_bad_shape, "x", "has shape"),
        (_rank_mismatch, "x", "has shape"),
        (lambda root: root.parent, "x", "outside the adapter root"),
        (lambda root: root / ".." / "adapters" / ".." / "x", "x", "outside the adapter root"),
        (_escaping_link, "x", "outside the adapter root"),
        (lambda root: root / "r8", "no/slashes", "must match"),
        (lambda root: root / "r8", "", "Both 'lora_name' and 'lora_path' must be provided"),
    ],
)
def test_a_bad_adapter_is_refused_with_its_reason_and_changes_nothing(
    store: LoRAAdapterStore, root: Path, make_path, name: str, reason: str
) -> None:
    before = store.list_adapters()
    with pytest.raises(AdapterRejected, match=reason):
        _load(store, name, make_path(root))
    assert store.list_adapters() == before


def test_a_name_already_loaded_is_refused(store: LoRAAdapterStore, root: Path) -> None:
    version = _load(store, "sql", root / "r8").version
    with pytest.raises(AdapterNameTaken, match="has already been loaded"):
        _load(store, "sql", root / "r16")
    assert _resolve(store, "sql") == version
