"""The engine adapter serves exactly what plain vLLM serves: greedy, token for token."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from actors.engine.adapter import EngineAdapter, UnknownAdapterError
from cluster.config import EngineConfig
from cluster.request import FinishReason, GenerationRequest, SamplingSpec
from tests.support import plain_vllm

pytestmark = pytest.mark.e2e

PROMPTS = [
    "The quick brown fox",
    "Disaggregated serving splits prefill from decode",
    "a",
    "Once upon a time, in a land far away, there lived a small engine that " * 6,
]
MAX_TOKENS = 12


def plain_vllm_token_ids(model: Path, adapter: Path) -> dict[str | None, list[list[int]]]:
    """Greedy token ids from one plain vLLM engine: base model (key None) and adapter."""
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    llm = plain_vllm(model, max_model_len=512)
    try:
        params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0)
        lora = LoRARequest("r16", 1, str(adapter))
        results = {}
        for name, request in ((None, None), ("r16", lora)):
            outputs = llm.generate(PROMPTS, params, lora_request=request)
            results[name] = [list(o.outputs[0].token_ids) for o in outputs]
        # One batch mixing base-model and LoRA rows gives every row its own answer.
        mixed = llm.generate(
            PROMPTS * 2, params, lora_request=[None] * len(PROMPTS) + [lora] * len(PROMPTS)
        )
        results["mixed"] = [list(o.outputs[0].token_ids) for o in mixed]
        return results
    finally:
        llm.llm_engine.engine_core.shutdown()
        del llm


async def adapter_token_ids(engine: EngineAdapter, adapter: str | None) -> list[list[int]]:
    async def one(i: int, prompt: str) -> list[int]:
        request = GenerationRequest(
            request_id=f"{adapter}-{i}",
            prompt=prompt,
            adapter=adapter,
            adapter_version=1,
            sampling=SamplingSpec(max_tokens=MAX_TOKENS),
        )
        ids: list[int] = []
        async for delta in engine.generate(request):
            ids.extend(delta.token_ids)
        assert delta.finish_reason in (FinishReason.LENGTH, FinishReason.STOP)
        return ids

    return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(PROMPTS))))


def test_greedy_output_equals_plain_vllm(tiny_model: Path) -> None:
    adapter_path = tiny_model / "adapters" / "r16"
    expected = plain_vllm_token_ids(tiny_model, adapter_path)

    async def run() -> tuple[list[list[int]], list[list[int]]]:
        config = EngineConfig(model_dir=tiny_model, max_model_len=512)
        engine = EngineAdapter(config)
        engine.add_adapter("r16@1", 1, adapter_path)
        try:
            with pytest.raises(UnknownAdapterError):
                async for _ in engine.generate(GenerationRequest("bad", "x", adapter="nope")):
                    pass
            return await adapter_token_ids(engine, None), await adapter_token_ids(engine, "r16")
        finally:
            engine.shutdown()

    got_base, got_lora = asyncio.run(run())
    assert got_base == expected[None]
    assert got_lora == expected["r16"]
    assert expected["mixed"] == expected[None] + expected["r16"]
    assert got_lora != got_base
