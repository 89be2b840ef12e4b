"""The model factory: deterministic random-weight checkpoints for tests and benchmarks.

Tests and benchmarks must not depend on a model hub, so tetriserve makes its own models.
`make_model` writes a Llama-architecture checkpoint in Hugging
Face format (config.json, model.safetensors, generation_config.json, a byte-level BPE
tokenizer with a chat template) plus PEFT LoRA adapters under `adapters/`: by default one
of each rank 8, 16, 32 and 64 (`r8` ... `r64`), or as many as asked, of ranks taken in turn
(`AdapterSet`: `a000-r8`, `a001-r16`, ...). The engine loads the directory like any real
checkpoint; `cluster.checkpoint` inspects it with the same code that inspects a user's own
checkpoint.

Lifecycle of one call: build everything into a hidden temporary directory beside the target,
write the completion marker last, then rename the directory into place. An interrupted run
leaves only the temporary directory behind, never a half model under the final name, and a
later call with the same size and seed finds the marker and returns at once.

The same size, seed and adapter set always give byte-identical files; an adapter's weights
depend only on the seed and its name. The random model never emits a
special token under greedy decoding (their output-head rows are zero), so a request runs to
its `max_tokens`, which keeps benchmark lengths exact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from safetensors.numpy import save_file

from cluster.tokenizer_factory import (
    BOS_TOKEN,
    CHAT_TEMPLATE,
    EOS_TOKEN,
    SPECIAL_TOKENS,
    UNK_TOKEN,
    build_tokenizer,
)

ModelSize = Literal["tiny", "small"]

MARKER_FILE = "tetriserve-model.json"
ADAPTER_RANKS = (8, 16, 32, 64)
MAX_POSITION_EMBEDDINGS = 2048

ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")

# Initial standard deviations, chosen so greedy output follows the prompt and keeps moving:
# token embeddings strong enough to matter, sharp attention, moderate MLP.
EMBEDDING_STD = 1.0
ATTENTION_STD = 0.08
MLP_STD = 0.05
OUTPUT_HEAD_STD = 0.05


@dataclass(frozen=True, slots=True)
class ModelShape:
    """The dimensions that define one model size."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


SHAPES: dict[str, ModelShape] = {
    "tiny": ModelShape(
        hidden_size=256,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=512,
        vocab_size=2048,
    ),
    "small": ModelShape(
        hidden_size=768,
        num_layers=12,
        num_heads=12,
        num_kv_heads=4,
        intermediate_size=2304,
        vocab_size=8192,
    ),
}


def tetriserve_home() -> Path:
    """Root of tetriserve's local cache: `$TETRISERVE_HOME` or `~/.cache/tetriserve`."""
    configured = os.environ.get("TETRISERVE_HOME")
    return Path(configured) if configured else Path.home() / ".cache" / "tetriserve"


@dataclass(frozen=True, slots=True)
class AdapterSet:
    """The LoRA adapters a model is made with: one of each of `ranks` (named `rR`), or
    `count` of them (named `aNNN-rR`, the ranks taken in turn)."""

    count: int | None = None
    ranks: tuple[int, ...] = ADAPTER_RANKS

    def __post_init__(self) -> None:
        if self.count is not None and self.count < 0:
            raise ValueError(f"adapter count must be >= 0, got {self.count}")
        if not self.ranks or min(self.ranks) < 1:
            raise ValueError(f"adapter ranks must be positive, got {self.ranks}")

    def named(self) -> list[tuple[str, int]]:
        """(name, rank) of every adapter."""
        if self.count is None:
            return [(f"r{rank}", rank) for rank in self.ranks]
        digits = max(3, len(str(self.count - 1)))
        ranks = [self.ranks[i % len(self.ranks)] for i in range(self.count)]
        return [(f"a{i:0{digits}d}-r{rank}", rank) for i, rank in enumerate(ranks)]

    def identity(self) -> dict[str, Any]:
        """What the completion marker records of it (nothing for the default set)."""
        if self == AdapterSet():
            return {}
        return {"adapters": self.count, "ranks": list(self.ranks)}


def default_model_dir(size: ModelSize = "tiny") -> Path:
    """Where `ensure_model` keeps the seed-0 model of a size."""
    return tetriserve_home() / "models" / f"{size}-seed0"


def ensure_model(size: ModelSize = "tiny") -> Path:
    """The cached seed-0 model of a size, made on first use."""
    return make_model(default_model_dir(size), size=size, seed=0)


def make_model(
    out_dir: Path, size: ModelSize = "tiny", seed: int = 0, adapters: AdapterSet = AdapterSet()
) -> Path:
    """Write a random-weight Llama checkpoint with LoRA adapters to `out_dir` and return it.

    Returns at once when `out_dir` already holds a complete model of this size, seed and
    adapter set. Raises FileExistsError when `out_dir` holds anything else.
    """
    if size not in SHAPES:
        raise ValueError(f"unknown model size {size!r}; choose one of {sorted(SHAPES)}")
    out_dir = Path(out_dir)
    identity = {"size": size, "seed": seed, **adapters.identity()}
    if _is_complete(out_dir, identity):
        return out_dir
    _refuse_foreign_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        _write_model(staging, SHAPES[size], size, seed, adapters)
        _write_json(staging / MARKER_FILE, identity)
        _make_readable(staging)
        try:
            staging.rename(out_dir)  # replaces only an empty directory
        except OSError:
            if not _is_complete(out_dir, identity):  # another maker finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def parameter_count(config: Mapping[str, Any]) -> int:
    """Number of weights of a Llama-family model described by a Hugging Face config dict."""
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    vocab = config["vocab_size"]
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)
    mlp = 3 * hidden * config["intermediate_size"]
    norms = 2 * hidden
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings") else 2)
    return config["num_hidden_layers"] * (attention + mlp + norms) + hidden + embeddings


def model_config(shape: ModelShape) -> dict[str, Any]:
    """The config.json of a model of this shape."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size,
        "num_hidden_layers": shape.num_layers,
        "num_attention_heads": shape.num_heads,
        "num_key_value_heads": shape.num_kv_heads,
        "head_dim": shape.head_dim,
        "vocab_size": shape.vocab_size,
        "max_position_embeddings": MAX_POSITION_EMBEDDINGS,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "attention_bias": False,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "bos_token_id": SPECIAL_TOKENS.index(BOS_TOKEN),
        "eos_token_id": SPECIAL_TOKENS.index(EOS_TOKEN),
        "use_cache": True,
    }


# --- writing -------------------------------------------------------------------------------


def _write_model(
    target: Path, shape: ModelShape, size: str, seed: int, adapters: AdapterSet
) -> None:
    config = model_config(shape)
    _write_json(target / "config.json", config)
    _write_json(
        target / "generation_config.json",
        {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]},
    )
    _write_tokenizer(target, shape.vocab_size)
    save_file(_base_weights(shape, seed), str(target / "model.safetensors"))
    for name, rank in adapters.named():
        _write_adapter(target / "adapters" / name, shape, rank, f"{size}-seed{seed}", seed)


def _write_tokenizer(target: Path, vocab_size: int) -> None:
    build_tokenizer(vocab_size).save(str(target / "tokenizer.json"), pretty=True)
    special = {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "unk_token": UNK_TOKEN}
    _write_json(target / "special_tokens_map.json", special)
    _write_json(
        target / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            **special,
            "add_bos_token": True,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": MAX_POSITION_EMBEDDINGS,
            "chat_template": CHAT_TEMPLATE,
        },
    )


def _write_adapter(target: Path, shape: ModelShape, rank: int, base_name: str, seed: int) -> None:
    target.mkdir(parents=True)
    alpha = 2 * rank
    modules = ATTENTION_MODULES + MLP_MODULES
    _write_json(
        target / "adapter_config.json",
        {
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_name,
            "r": rank,
            "lora_alpha": alpha,
            "lora_dropout": 0.0,
            "target_modules": list(modules),
            "bias": "none",
            "fan_in_fan_out": False,
            "inference_mode": True,
            "modules_to_save": None,
        },
    )
    weights: dict[str, np.ndarray] = {}
    streams = _RandomStreams(seed, f"adapter-{target.name}")
    for layer in range(shape.num_layers):
        for module in modules:
            out_features, in_features = _projection_shape(shape, module)
            base_std = ATTENTION_STD if module in ATTENTION_MODULES else MLP_STD
            # Sized so that (alpha / r) * B @ A has about the spread of the base weight itself.
            a_std = 1.0 / np.sqrt(in_features)
            b_std = base_std * np.sqrt(in_features / rank) * rank / alpha
            prefix = f"base_model.model.model.layers.{layer}.{_module_path(module)}"
            weights[f"{prefix}.lora_A.weight"] = streams.normal((rank, in_features), a_std)
            weights[f"{prefix}.lora_B.weight"] = streams.normal((out_features, rank), b_std)
    save_file(weights, str(target / "adapter_model.safetensors"))


def _base_weights(shape: ModelShape, seed: int) -> dict[str, np.ndarray]:
    streams = _RandomStreams(seed, "base")
    hidden, vocab = shape.hidden_size, shape.vocab_size
    weights = {"model.embed_tokens.weight": streams.normal((vocab, hidden), EMBEDDING_STD)}
    for layer in range(shape.num_layers):
        prefix = f"model.layers.{layer}"
        weights[f"{prefix}.input_layernorm.weight"] = np.ones(hidden, np.float32)
        weights[f"{prefix}.post_attention_layernorm.weight"] = np.ones(hidden, np.float32)
        for module in ATTENTION_MODULES + MLP_MODULES:
            std = ATTENTION_STD if module in ATTENTION_MODULES else MLP_STD
            weights[f"{prefix}.{_module_path(module)}.weight"] = streams.normal(
                _projection_shape(shape, module), std
            )
    weights["model.norm.weight"] = np.ones(hidden, np.float32)
    output_head = streams.normal((vocab, hidden), OUTPUT_HEAD_STD)
    output_head[: len(SPECIAL_TOKENS)] = 0.0  # greedy decoding never picks a special token
    weights["lm_head.weight"] = output_head
    return weights


def _projection_shape(shape: ModelShape, module: str) -> tuple[int, int]:
    """(out_features, in_features) of one projection, as stored in the checkpoint."""
    hidden, head_dim = shape.hidden_size, shape.head_dim
    return {
        "q_proj": (shape.num_heads * head_dim, hidden),
        "k_proj": (shape.num_kv_heads * head_dim, hidden),
        "v_proj": (shape.num_kv_heads * head_dim, hidden),
        "o_proj": (hidden, shape.num_heads * head_dim),
        "gate_proj": (shape.intermediate_size, hidden),
        "up_proj": (shape.intermediate_size, hidden),
        "down_proj": (hidden, shape.intermediate_size),
    }[module]


def _module_path(module: str) -> str:
    return f"self_attn.{module}" if module in ATTENTION_MODULES else f"mlp.{module}"


class _RandomStreams:
    """Float32 normal tensors from one seeded stream per (seed, purpose)."""

    def __init__(self, seed: int, purpose: str) -> None:
        purpose_key = int.from_bytes(purpose.encode(), "little")
        self._rng = np.random.Generator(
            np.random.PCG64(np.random.SeedSequence([seed, purpose_key]))
        )

    def normal(self, shape: tuple[int, ...], std: float) -> np.ndarray:
        values = self._rng.standard_normal(shape, dtype=np.float32)
        values *= np.float32(std)
        return values


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _make_readable(root: Path) -> None:
    """Temporary directories and safetensors files start private; a model is for everyone."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _is_complete(out_dir: Path, identity: Mapping[str, Any]) -> bool:
    marker = out_dir / MARKER_FILE
    if not marker.is_file():
        return False
    found = json.loads(marker.read_text(encoding="utf-8"))
    if found != dict(identity):
        raise FileExistsError(f"{out_dir} already holds a model made with {found}, not {identity}")
    return True


def _refuse_foreign_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and is not a model made by make_model")


# --- the tokenizer's training corpus -------------------------------------------------------
