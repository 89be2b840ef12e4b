"""A model from `tetriserve make-model` loads in plain vLLM, and every adapter changes its output.

One vLLM engine (tiny model, eager mode, 1 GiB KV cache) serves the whole module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.model_factory import ADAPTER_RANKS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["Hello, my name is", "The capital of France is", "Once upon a time"]
MAX_TOKENS = 16


def _tetriserve_command() -> list[str]:
    console_script = Path(sys.executable).parent / "tetriserve"
    if console_script.is_file():
        return [str(console_script)]
    return [sys.executable, "-m", "deploy.cli"]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    model_dir = tmp_path_factory.mktemp("factory") / "tiny"
    command = [*_tetriserve_command(), "make-model", "--out", str(model_dir), "--size", "tiny"]
    result = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return model_dir, result.stdout


@pytest.fixture(scope="module")
def llm(made: tuple[Path, str]) -> Iterator[object]:
    import vllm

    model_dir, _ = made
    patch = pytest.MonkeyPatch()
    patch.setenv("VLLM_CPU_KVCACHE_SPACE", os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
    engine = vllm.LLM(
        model=str(model_dir),
        dtype="float32",
        enable_lora=True,
        max_lora_rank=max(ADAPTER_RANKS),
        max_loras=len(ADAPTER_RANKS),
        max_model_len=512,
        enforce_eager=True,
        seed=0,
    )
    try:
        yield engine
    finally:
        engine.llm_engine.engine_core.shutdown()  # free the engine's cores for the next module
        patch.undo()


def _greedy(llm: object, adapter: tuple[str, int, Path] | None = None) -> list[str]:
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    request = LoRARequest(adapter[0], adapter[1], str(adapter[2])) if adapter else None
    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS)
    outputs = llm.generate(PROMPTS, params, lora_request=request, use_tqdm=False)
    return [output.outputs[0].text for output in outputs]


@pytest.fixture(scope="module")
def base_outputs(llm: object) -> list[str]:
    return _greedy(llm)


def test_cli_reports_the_model_and_adapters(made: tuple[Path, str]) -> None:
    model_dir, printed = made
    assert str(model_dir) in printed
    assert "parameters:" in printed
    for rank in ADAPTER_RANKS:
        assert f"r{rank} rank {rank}" in printed


def test_base_model_generates_prompt_dependent_text(base_outputs: list[str]) -> None:
    assert all(text.strip() for text in base_outputs)
    assert len(set(base_outputs)) == len(PROMPTS)


def test_greedy_generation_is_repeatable(llm: object, base_outputs: list[str]) -> None:
    assert _greedy(llm) == base_outputs


@pytest.mark.parametrize("rank", ADAPTER_RANKS)
def test_each_adapter_changes_the_output(
    llm: object, made: tuple[Path, str], base_outputs: list[str], rank: int
) -> None:
    model_dir, _ = made
    name = f"r{rank}"
    adapted = _greedy(llm, (name, ADAPTER_RANKS.index(rank) + 1, model_dir / "adapters" / name))
    assert all(text.strip() for text in adapted)
    assert all(a != b for a, b in zip(adapted, base_outputs, strict=True))


def test_chat_template_serves_chat(llm: object) -> None:
    from vllm import SamplingParams

    messages = [{"role": "user", "content": "Say something."}]
    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS)
    outputs = llm.chat(messages, params, use_tqdm=False)
    assert outputs[0].outputs[0].text.strip()
    assert outputs[0].prompt_token_ids[0] == 1  # the template starts with <s>
