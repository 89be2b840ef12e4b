"""Whether an adapter may be loaded at run time: the checks behind `/v1/load_lora_adapter`.

The adapter store (actors/adapters/adapter_store.py) calls `check_adapter` before it takes
an adapter in. A refusal is an `AdapterRejected` whose message says why, and the front door
answers it with a 400: the path lies outside the adapter root, the files are missing, the
rank is above the engine's maximum, or a weight's shape does not fit the base model. Shapes
are read from the safetensors headers alone, so a check costs no weight loading.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from safetensors import safe_open

from cluster.checkpoint import AdapterInfo, CheckpointError, inspect_adapter

ADAPTER_WEIGHTS = "adapter_model.safetensors"
# PEFT names a weight `base_model.model.<base module>.lora_A.weight` (or lora_B).
_PEFT_PREFIX = "base_model.model."
_LORA_SUFFIXES = {".lora_A.weight": "A", ".lora_B.weight": "B"}

Shape = tuple[int, ...]


class AdapterRejected(ValueError):
    """An adapter that cannot be loaded as it is; the message says why."""


def projection_shapes(model_dir: Path) -> dict[str, Shape]:
    """The base model's 2-D weights, `module path → (out_features, in_features)`, read from
    its safetensors headers (`model.layers.0.self_attn.q_proj` → the q projection's)."""
    shapes: dict[str, Shape] = {}
    for file in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(file), framework="np") as weights:
            for key in weights.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                shape = tuple(weights.get_slice(key).get_shape())
                if key.endswith(".weight") and len(shape) == 2:
                    shapes[key.removesuffix(".weight")] = shape
    return shapes


def check_adapter(
    name: str,
    adapter_dir: Path,
    root: Path,
    base_shapes: Mapping[str, Shape],
    max_rank: int,
) -> AdapterInfo:
    """The adapter at `adapter_dir`, to be served as `name`, if it may be loaded; raises
    AdapterRejected otherwise. `root`: the folder every adapter must lie under (symbolic
    links are followed first); `base_shapes`: `projection_shapes` of the base model."""
    resolved = Path(adapter_dir).resolve()
    if not resolved.is_relative_to(Path(root).resolve()):
        raise AdapterRejected(f"lora_path {adapter_dir} lies outside the adapter root {root}")
    if not resolved.is_dir():
        raise AdapterRejected(f"lora_path {adapter_dir} is not a directory")
    try:
        info = inspect_adapter(resolved, name)
    except CheckpointError as exc:
        raise AdapterRejected(str(exc)) from None
    if not (resolved / ADAPTER_WEIGHTS).is_file():
        raise AdapterRejected(f"adapter {name} holds no {ADAPTER_WEIGHTS}")
    if info.rank > max_rank:
        raise AdapterRejected(
            f"adapter {name} has rank {info.rank}, above the engine's maximum LoRA rank {max_rank}"
        )
    _check_shapes(name, resolved / ADAPTER_WEIGHTS, info.rank, base_shapes)
    return info


def _check_shapes(
    name: str, weights_file: Path, rank: int, base_shapes: Mapping[str, Shape]
) -> None:
    try:
        with safe_open(str(weights_file), framework="np") as weights:
            shapes = {key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise AdapterRejected(f"adapter {name}: cannot read {weights_file.name}: {exc}") from None
    if not shapes:
        raise AdapterRejected(f"adapter {name}: {weights_file.name} holds no weights")
    for key, shape in sorted(shapes.items()):
        module, half = _lora_module(key)
        if module is None:
            continue  # not a LoRA A or B weight (vLLM ignores it too)
        base = base_shapes.get(module)
        if base is None:
            raise AdapterRejected(f"adapter {name}: {key} targets {module}, not in the base model")
        out_features, in_features = base
        expected = (rank, in_features) if half == "A" else (out_features, rank)
        if shape != expected:
            raise AdapterRejected(
                f"adapter {name}: {key} has shape {list(shape)}, "
                f"the base model and rank {rank} need {list(expected)}"
            )


def _lora_module(key: str) -> tuple[str | None, str]:
    """`base_model.model.X.lora_A.weight` → (`X`, "A"); (None, "") for other weights."""
    for suffix, half in _LORA_SUFFIXES.items():
        if key.endswith(suffix):
            return key.removesuffix(suffix).removeprefix(_PEFT_PREFIX), half
    return None, ""
