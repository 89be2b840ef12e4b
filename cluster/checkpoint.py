"""Checkpoint inspection: what a model directory holds, before any engine loads it.

`inspect_checkpoint` reads a Hugging Face checkpoint directory (one made by
`cluster.model_factory` or a real Llama / Mistral / Qwen checkpoint a user already has) and
returns the figures the rest of the system plans with: context length, layer and KV-head
counts, head dimension, vocabulary, and the LoRA adapters found under `adapters/NAME/`.
Anything the engine could not serve fails here, early, with an error that says what was
found and what is expected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUPPORTED_ARCHITECTURES = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
)
ADAPTERS_DIR = "adapters"
ADAPTER_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
_WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
_ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


class CheckpointError(ValueError):
    """A model directory that cannot be served as it is."""


class UnsupportedCheckpoint(CheckpointError):
    """A checkpoint whose architecture the engine adapter does not serve."""


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    """One PEFT LoRA adapter stored under `model_dir/adapters/NAME`."""

    name: str
    path: Path
    rank: int
    target_modules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """The shape of a checkpoint, as read from its config.json, and its adapters."""

    model_dir: Path
    architecture: str
    max_model_len: int
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    adapters: dict[str, AdapterInfo] = field(default_factory=dict)

    def kv_bytes_per_token(self, dtype_bytes: int = 4) -> int:
        """Bytes of KV cache one token occupies across all layers (keys and values)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype_bytes

    @property
    def max_adapter_rank(self) -> int:
        return max((adapter.rank for adapter in self.adapters.values()), default=0)


def inspect_checkpoint(model_dir: Path) -> CheckpointInfo:
    """Read `model_dir`'s config.json and adapters; raise CheckpointError if unservable."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir} is not a directory")
    config = _read_json(model_dir / "config.json", what="model config")
    architecture = _architecture(config, model_dir)
    if not any(any(model_dir.glob(pattern)) for pattern in _WEIGHT_PATTERNS):
        raise CheckpointError(f"{model_dir} holds no weights (no *.safetensors and no *.bin files)")
    hidden_size = _positive_int(config, "hidden_size", model_dir)
    num_heads = _positive_int(config, "num_attention_heads", model_dir)
    num_kv_heads = config.get("num_key_value_heads") or num_heads
    head_dim = config.get("head_dim") or hidden_size // num_heads
    return CheckpointInfo(
        model_dir=model_dir,
        architecture=architecture,
        max_model_len=_positive_int(config, "max_position_embeddings", model_dir),
        num_layers=_positive_int(config, "num_hidden_layers", model_dir),
        hidden_size=hidden_size,
        num_heads=num_heads,
        num_kv_heads=int(num_kv_heads),
        head_dim=int(head_dim),
        vocab_size=_positive_int(config, "vocab_size", model_dir),
        adapters=_discover_adapters(model_dir / ADAPTERS_DIR),
    )


def inspect_adapter(adapter_dir: Path, name: str | None = None) -> AdapterInfo:
    """Read one PEFT LoRA adapter directory, served as `name` (by default the directory's)."""
    adapter_dir = Path(adapter_dir)
    name = adapter_dir.name if name is None else name
    if not ADAPTER_NAME_PATTERN.fullmatch(name):
        raise CheckpointError(
            f"adapter directory {adapter_dir}: name {name!r} must match "
            f"{ADAPTER_NAME_PATTERN.pattern}"
        )
    config = _read_json(adapter_dir / "adapter_config.json", what="adapter config")
    peft_type = config.get("peft_type", "LORA")
    if str(peft_type).upper() != "LORA":
        raise CheckpointError(f"adapter {name}: peft_type is {peft_type!r}, only LORA is served")
    if not any((adapter_dir / file).is_file() for file in _ADAPTER_WEIGHT_FILES):
        raise CheckpointError(
            f"adapter {name} holds no weights (expected one of {', '.join(_ADAPTER_WEIGHT_FILES)})"
        )
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank <= 0:
        raise CheckpointError(f"adapter {name}: rank 'r' must be a positive integer, got {rank!r}")
    modules = config.get("target_modules") or ()
    target_modules = (modules,) if isinstance(modules, str) else tuple(str(m) for m in modules)
    return AdapterInfo(name=name, path=adapter_dir, rank=rank, target_modules=target_modules)


def _discover_adapters(adapters_dir: Path) -> dict[str, AdapterInfo]:
    if not adapters_dir.is_dir():
        return {}
    found = {}
    for entry in sorted(adapters_dir.iterdir()):
        if entry.is_dir() and not entry.name.startswith("."):
            adapter = inspect_adapter(entry)
            found[adapter.name] = adapter
    return found


def _architecture(config: Mapping[str, Any], model_dir: Path) -> str:
    found = config.get("architectures") or []
    if isinstance(found, str):
        found = [found]
    for architecture in found:
        if architecture in SUPPORTED_ARCHITECTURES:
            return architecture
    described = ", ".join(map(str, found)) or "no 'architectures' entry"
    raise UnsupportedCheckpoint(
        f"{model_dir}: config.json names {described}; "
        f"supported architectures: {', '.join(SUPPORTED_ARCHITECTURES)}"
    )


def _positive_int(config: Mapping[str, Any], key: str, model_dir: Path) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise CheckpointError(
            f"{model_dir}/config.json: {key!r} must be a positive integer, got {value!r}"
        )
    return value


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path.parent} has no {path.name} ({what})")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read {what} {path}: {error}") from error
    if not isinstance(payload, dict):
        raise CheckpointError(f"{what} {path} is not a JSON object")
    return payload
