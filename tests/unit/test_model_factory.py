"""The model factory writes deterministic, loadable checkpoints; inspection reads any of them."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jinja2
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer

from cluster import model_factory
from cluster.checkpoint import (
    CheckpointError,
    UnsupportedCheckpoint,
    inspect_adapter,
    inspect_checkpoint,
)
from cluster.model_factory import (
    ADAPTER_RANKS,
    SHAPES,
    AdapterSet,
    default_model_dir,
    ensure_model,
    make_model,
    model_config,
    parameter_count,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("made") / "tiny", size="tiny", seed=0)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _tensor_count(path: Path) -> int:
    with safe_open(str(path), framework="np") as weights:
        return sum(math.prod(weights.get_slice(key).get_shape()) for key in weights.keys())  # noqa: SIM118


# --- determinism and caching ---------------------------------------------------------------


def test_same_seed_gives_identical_bytes_across_processes(tiny: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    script = "import sys; from pathlib import Path; from cluster.model_factory import make_model;"
    script += " make_model(Path(sys.argv[1]), size='tiny', seed=0)"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "RAYON_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", script, str(again)], check=True, cwd=REPO_ROOT, env=env)
    assert _files(again) == _files(tiny)


def test_different_seed_gives_different_weights_same_tokenizer(tiny: Path, tmp_path: Path) -> None:
    other = make_model(tmp_path / "seed1", size="tiny", seed=1)
    base_a, base_b = load_file(tiny / "model.safetensors"), load_file(other / "model.safetensors")
    assert base_a.keys() == base_b.keys()
    assert not np.array_equal(
        base_a["model.embed_tokens.weight"], base_b["model.embed_tokens.weight"]
    )
    adapter = "adapters/r8/adapter_model.safetensors"
    assert (tiny / adapter).read_bytes() != (other / adapter).read_bytes()
    assert (tiny / "tokenizer.json").read_bytes() == (other / "tokenizer.json").read_bytes()


def test_complete_model_is_returned_without_rewriting(tiny: Path) -> None:
    weights = tiny / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert make_model(tiny, size="tiny", seed=0) == tiny
    assert weights.stat().st_mtime_ns == before


def test_existing_model_of_another_seed_is_refused(tiny: Path) -> None:
    with pytest.raises(FileExistsError, match="seed"):
        make_model(tiny, size="tiny", seed=7)


def test_foreign_non_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a model"):
        make_model(tmp_path, size="tiny")


def test_failed_run_leaves_nothing_that_looks_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(model_factory, "_base_weights", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_model(tmp_path / "model", size="tiny")
    assert list(tmp_path.iterdir()) == []


def test_ensure_model_uses_tetriserve_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETRISERVE_HOME", str(tmp_path))
    assert default_model_dir("small") == tmp_path / "models" / "small-seed0"
    made = ensure_model("tiny")
    assert made == tmp_path / "models" / "tiny-seed0"
    assert (made / "model.safetensors").is_file()


def test_unknown_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tiny"):
        make_model(tmp_path / "m", size="huge")  # type: ignore[arg-type]


# --- the checkpoint's shape ----------------------------------------------------------------


@pytest.mark.parametrize("size", sorted(SHAPES))
def test_head_dim_is_64(size: str) -> None:
    config = model_config(SHAPES[size])
    assert config["head_dim"] == config["hidden_size"] // config["num_attention_heads"] == 64


def test_config_json_is_a_float32_llama(tiny: Path) -> None:
    config = json.loads((tiny / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["torch_dtype"] == "float32"
    assert config["tie_word_embeddings"] is False
    assert config["max_position_embeddings"] == 2048
    assert config["rope_theta"] > 0 and config["rms_norm_eps"] > 0
    assert (config["bos_token_id"], config["eos_token_id"]) == (1, 2)
    generation = json.loads((tiny / "generation_config.json").read_text())
    assert generation["eos_token_id"] == config["eos_token_id"]


def test_tiny_weights_match_the_parameter_count_and_are_float32(tiny: Path) -> None:
    config = json.loads((tiny / "config.json").read_text())
    assert _tensor_count(tiny / "model.safetensors") == parameter_count(config)
    weights = load_file(tiny / "model.safetensors")
    assert {array.dtype for array in weights.values()} == {np.dtype(np.float32)}
    assert weights["model.embed_tokens.weight"].shape == (2048, 256)
    assert weights["model.layers.1.self_attn.k_proj.weight"].shape == (2 * 64, 256)


def test_small_has_about_100m_parameters() -> None:
    assert parameter_count(model_config(SHAPES["small"])) == pytest.approx(100e6, rel=0.15)


def test_parameter_count_of_tied_embeddings() -> None:
    config = {**model_config(SHAPES["tiny"]), "tie_word_embeddings": True}
    untied = parameter_count(model_config(SHAPES["tiny"]))
    assert parameter_count(config) == untied - 2048 * 256


# --- the tokenizer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world!",
        "  leading and trailing spaces  ",
        "tabs\tnew\nlines\r\n and NUL \x00 bytes",
        "naïve café, Straße, 東京, مرحبا, 🙂🚀 and \u200b zero width",
        "",
    ],
)
def test_tokenizer_round_trips_text_without_unknowns(tiny: Path, text: str) -> None:
    tokenizer = Tokenizer.from_file(str(tiny / "tokenizer.json"))
    encoding = tokenizer.encode(text)
    assert encoding.ids[0] == tokenizer.token_to_id("<s>")
    assert tokenizer.token_to_id("<unk>") not in encoding.ids
    assert tokenizer.decode(encoding.ids) == text


def test_tokenizer_files_describe_special_tokens_and_chat(tiny: Path) -> None:
    tokenizer = Tokenizer.from_file(str(tiny / "tokenizer.json"))
    assert tokenizer.get_vocab_size() == SHAPES["tiny"].vocab_size
    settings = json.loads((tiny / "tokenizer_config.json").read_text())
    special = json.loads((tiny / "special_tokens_map.json").read_text())
    assert special == {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    assert {key: settings[key] for key in special} == special
    assert settings["model_max_length"] == 2048
    template = jinja2.Environment().from_string(settings["chat_template"])
    rendered = template.render(
        messages=[{"role": "user", "content": "hi"}],
        add_generation_prompt=True,
        bos_token="<s>",
        eos_token="</s>",
    )
    assert rendered == "<s><|user|>\nhi</s>\n<|assistant|>\n"


# --- the adapters --------------------------------------------------------------------------


@pytest.mark.parametrize("rank", ADAPTER_RANKS)
def test_adapter_is_peft_lora_of_its_rank(tiny: Path, rank: int) -> None:
    adapter = tiny / "adapters" / f"r{rank}"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert config["r"] == rank and config["lora_alpha"] > 0
    assert config["bias"] == "none" and config["lora_dropout"] == 0
    assert config["fan_in_fan_out"] is False
    assert {"q_proj", "k_proj", "v_proj", "o_proj"} <= set(config["target_modules"])
    weights = load_file(adapter / "adapter_model.safetensors")
    assert len(weights) == 2 * SHAPES["tiny"].num_layers * len(config["target_modules"])
    prefix = "base_model.model.model.layers.1.self_attn"
    assert weights[f"{prefix}.q_proj.lora_A.weight"].shape == (rank, 256)
    assert weights[f"{prefix}.q_proj.lora_B.weight"].shape == (256, rank)
    assert weights[f"{prefix}.k_proj.lora_B.weight"].shape == (128, rank)
    assert weights["base_model.model.model.layers.0.mlp.down_proj.lora_A.weight"].shape == (
        rank,
        512,
    )
    assert all(np.any(array) for name, array in weights.items() if "lora_B" in name)


def test_an_adapter_set_names_its_adapters_with_the_ranks_taken_in_turn() -> None:
    assert AdapterSet().named() == [(f"r{rank}", rank) for rank in ADAPTER_RANKS]
    assert AdapterSet(5, (8, 16)).named() == [
        ("a000-r8", 8),
        ("a001-r16", 16),
        ("a002-r8", 8),
        ("a003-r16", 16),
        ("a004-r8", 8),
    ]
    assert [name for name, _ in AdapterSet(1001, (8,)).named()][-1] == "a1000-r8"
    assert AdapterSet(0).named() == []
    with pytest.raises(ValueError, match="ranks"):
        AdapterSet(3, (8, 0))
    with pytest.raises(ValueError, match="count"):
        AdapterSet(-1)


def test_many_adapters_are_written_and_each_has_its_rank(tmp_path: Path) -> None:
    model = make_model(tmp_path / "many", size="tiny", adapters=AdapterSet(6, (8, 32)))
    info = inspect_checkpoint(model)
    assert {name: adapter.rank for name, adapter in info.adapters.items()} == {
        "a000-r8": 8,
        "a001-r32": 32,
        "a002-r8": 8,
        "a003-r32": 32,
        "a004-r8": 8,
        "a005-r32": 32,
    }
    first = load_file(model / "adapters" / "a000-r8" / "adapter_model.safetensors")
    third = load_file(model / "adapters" / "a002-r8" / "adapter_model.safetensors")
    assert first.keys() == third.keys()
    assert any(not np.array_equal(first[key], third[key]) for key in first)


def test_an_adapters_weights_depend_only_on_the_seed_and_its_name(
    tiny: Path, tmp_path: Path
) -> None:
    fewer = make_model(tmp_path / "two", size="tiny", adapters=AdapterSet(2, (8, 16)))
    more = make_model(tmp_path / "four", size="tiny", adapters=AdapterSet(4, (8, 16)))
    made = "adapters/a001-r16/adapter_model.safetensors"
    assert (fewer / made).read_bytes() == (more / made).read_bytes()
    other_ranks = make_model(tmp_path / "ranks", size="tiny", adapters=AdapterSet(ranks=(8, 64)))
    default = "adapters/r64/adapter_model.safetensors"
    assert (other_ranks / default).read_bytes() == (tiny / default).read_bytes()


def test_a_model_with_another_adapter_set_is_refused(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m", size="tiny", adapters=AdapterSet(2))
    assert make_model(model, size="tiny", adapters=AdapterSet(2)) == model
    with pytest.raises(FileExistsError, match="adapters"):
        make_model(model, size="tiny", adapters=AdapterSet(3))


# --- inspection ----------------------------------------------------------------------------


def test_inspect_made_model(tiny: Path) -> None:
    info = inspect_checkpoint(tiny)
    assert info.model_dir == tiny
    assert info.architecture == "LlamaForCausalLM"
    assert (info.max_model_len, info.num_layers, info.hidden_size) == (2048, 2, 256)
    assert (info.num_heads, info.num_kv_heads, info.head_dim, info.vocab_size) == (4, 2, 64, 2048)
    assert {name: adapter.rank for name, adapter in info.adapters.items()} == {
        "r8": 8,
        "r16": 16,
        "r32": 32,
        "r64": 64,
    }
    assert info.adapters["r8"].path == tiny / "adapters" / "r8"
    assert "q_proj" in info.adapters["r8"].target_modules
    assert info.max_adapter_rank == 64
    assert info.kv_bytes_per_token() == 2 * 2 * 2 * 64 * 4


def _write_checkpoint(root: Path, config: dict[str, object], weights: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(config))
    if weights:
        save_file({"dummy": np.zeros(1, np.float32)}, str(root / "model.safetensors"))
    return root


QWEN2_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 896,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "num_hidden_layers": 24,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
}


def test_inspect_qwen2_style_checkpoint(tmp_path: Path) -> None:
    info = inspect_checkpoint(_write_checkpoint(tmp_path, QWEN2_CONFIG))
    assert info.architecture == "Qwen2ForCausalLM"
    assert (info.head_dim, info.num_kv_heads, info.num_layers) == (64, 2, 24)
    assert (info.max_model_len, info.vocab_size) == (32768, 151936)
    assert info.adapters == {}


def test_inspect_uses_explicit_head_dim_and_bin_weights(tmp_path: Path) -> None:
    config = {**QWEN2_CONFIG, "architectures": ["Qwen3ForCausalLM"], "head_dim": 128}
    model_dir = _write_checkpoint(tmp_path, config, weights=False)
    (model_dir / "pytorch_model.bin").write_bytes(b"\0")
    assert inspect_checkpoint(model_dir).head_dim == 128


def test_unsupported_architecture_names_found_and_supported(tmp_path: Path) -> None:
    config = {**QWEN2_CONFIG, "architectures": ["GPT2LMHeadModel"]}
    with pytest.raises(UnsupportedCheckpoint, match="GPT2LMHeadModel") as raised:
        inspect_checkpoint(_write_checkpoint(tmp_path, config))
    assert "LlamaForCausalLM" in str(raised.value) and "Qwen2ForCausalLM" in str(raised.value)


def test_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"config\.json"):
        inspect_checkpoint(tmp_path)


def test_missing_weights_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no weights"):
        inspect_checkpoint(_write_checkpoint(tmp_path, QWEN2_CONFIG, weights=False))


def test_missing_config_field_is_a_clear_error(tmp_path: Path) -> None:
    config = {key: value for key, value in QWEN2_CONFIG.items() if key != "vocab_size"}
    with pytest.raises(CheckpointError, match="vocab_size"):
        inspect_checkpoint(_write_checkpoint(tmp_path, config))


def _write_adapter(root: Path, name: str, config: dict[str, object] | None = None) -> Path:
    adapter = root / "adapters" / name
    adapter.mkdir(parents=True)
    payload = config or {"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"]}
    (adapter / "adapter_config.json").write_text(json.dumps(payload))
    save_file({"dummy": np.zeros(1, np.float32)}, str(adapter / "adapter_model.safetensors"))
    return adapter


def test_adapters_are_discovered_beside_any_checkpoint(tmp_path: Path) -> None:
    model_dir = _write_checkpoint(tmp_path, QWEN2_CONFIG)
    _write_adapter(model_dir, "sql-v1.2_x")
    info = inspect_checkpoint(model_dir)
    assert info.adapters["sql-v1.2_x"].rank == 4
    assert info.adapters["sql-v1.2_x"].target_modules == ("q_proj",)


def test_adapter_name_must_be_plain(tmp_path: Path) -> None:
    model_dir = _write_checkpoint(tmp_path, QWEN2_CONFIG)
    _write_adapter(model_dir, "bad name")
    with pytest.raises(CheckpointError, match="bad name"):
        inspect_checkpoint(model_dir)


def test_adapter_without_config_or_rank_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"adapter_config\.json"):
        inspect_adapter(tmp_path / "empty")
    broken = _write_adapter(tmp_path, "norank", {"peft_type": "LORA", "target_modules": "q_proj"})
    with pytest.raises(CheckpointError, match="rank"):
        inspect_adapter(broken)
