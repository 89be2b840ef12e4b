"""The engine adapter: the one place that talks to vLLM.

Prefill and decode instances each own one `EngineAdapter`. It turns a `GenerationRequest`
into a vLLM request (sampling parameters, LoRA adapter, prompt tokens), streams back
`TokenDelta`s, aborts, and reports load. It picks dtype and KV-cache size for the device
(float32 and `VLLM_CPU_KVCACHE_SPACE` on CPU; the model's dtype and a GPU memory fraction on
CUDA) and needs no Ray, so tests build it directly.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from actors import cpu_priority
from actors.engine import core_share, shm_janitor
from actors.engine.prior_output_penalties import PRIOR_OUTPUT, penalties_args
from actors.engine.prior_output_penalties import QUALNAME as PRIOR_OUTPUT_PENALTIES
from actors.engine.vllm_busy_poll import ENV_VAR as BUSY_POLL_ENV
from actors.engine.vllm_exit_with_owner import ENV_VAR as OWNER_ENV
from cluster.config import EngineConfig
from cluster.request import FinishReason, GenerationRequest, SamplingSpec, TokenDelta

_FINISH_REASONS = {
    "length": FinishReason.LENGTH,
    "stop": FinishReason.STOP,
    "abort": FinishReason.ABORT,
}


class UnknownAdapterError(KeyError):
    """The request names a LoRA adapter (or a version of one) this engine was not given."""


@dataclass(frozen=True, slots=True)
class EngineStats:
    unfinished_requests: int
    queued_tokens: int


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def engine_args(config: EngineConfig) -> dict:
    """Keyword arguments for vLLM's engine, chosen for the device. Sets the environment
    variables its processes read (CPU cores and KV cache size, busy polling)."""
    device = resolve_device(config.device)
    args: dict = {
        "model": str(config.model_dir),
        "max_model_len": config.max_model_len,
        "max_num_seqs": config.max_num_seqs,
        "block_size": config.block_size,
        "enforce_eager": config.enforce_eager,
        "seed": config.seed,
        "enable_lora": config.enable_lora,
        "disable_log_stats": False,
        "logits_processors": [PRIOR_OUTPUT_PENALTIES],
    }
    if config.max_num_batched_tokens is not None:
        args["max_num_batched_tokens"] = config.max_num_batched_tokens
    if config.enable_lora:
        args |= {"max_lora_rank": config.max_lora_rank, "max_loras": config.max_loras}
    if config.kv_transfer is not None:
        args["kv_transfer_config"] = config.kv_transfer
    if config.busy_poll_ms is not None:
        os.environ[BUSY_POLL_ENV] = str(config.busy_poll_ms)
    os.environ[OWNER_ENV] = str(os.getpid())  # the engine's processes end with this one
    if device == "cpu":
        # bfloat16 kills the worker with SIGILL on these CPUs; float32 is the safe choice.
        args["dtype"] = "float32"
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(config.kv_cache_gib)
        os.environ.update(_cpu_placement(config))
    else:
        args["dtype"] = "auto"
        args["gpu_memory_utilization"] = config.gpu_memory_utilization
    return args


def _cpu_placement(config: EngineConfig) -> dict[str, str]:
    """Where a CPU engine's threads run: vLLM's own binding to `cpu_cores`, or, where the
    engine shares cores with a partner, one thread per home and borrowed core, placed and
    counted at every step by the core-share plugin, which also says which engine leads."""
    for name in core_share.ENVIRONMENT:
        os.environ.pop(name, None)  # an earlier engine's, in this process
    if config.cpu_cores is None:
        return {}
    if config.core_board is None:
        return {"VLLM_CPU_OMP_THREADS_BIND": config.cpu_cores}
    return {
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
        core_share.BOARD_ENV: str(config.core_board),
        core_share.HOME_ENV: config.cpu_cores,
        core_share.BORROWED_ENV: config.borrowed_cores or "",
        core_share.LEADS_ENV: "1" if config.leads_shared_cores else "0",
        core_share.LEAD_SHARE_ENV: str(config.lead_share),
    }


def vllm_sampling_params(
    spec: SamplingSpec, kv_transfer_params: dict | None = None, prior_output: int = 0
):
    """vLLM's sampling parameters for `spec`. Engines return token ids only: the request's
    owner turns them into text and checks stop strings over the whole output, whichever
    engine made each token. `prior_output`: how many of the prompt's last tokens are output
    generated elsewhere; frequency and presence penalties then go through the
    PriorOutputPenalties logits processor, which counts them as vLLM counts output."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    extra: dict = {}
    if kv_transfer_params:
        extra["kv_transfer_params"] = kv_transfer_params
    penalties = {
        "frequency_penalty": spec.frequency_penalty,
        "presence_penalty": spec.presence_penalty,
        "repetition_penalty": spec.repetition_penalty,
    }
    if prior_output and spec.penalises_output:
        extra[PRIOR_OUTPUT] = penalties_args(prior_output, *penalties.values())
        penalties = {"frequency_penalty": 0.0, "presence_penalty": 0.0, "repetition_penalty": 1.0}
    return SamplingParams(
        max_tokens=spec.max_tokens,
        min_tokens=spec.min_tokens,
        temperature=spec.temperature,
        top_p=spec.top_p,
        top_k=spec.top_k if spec.top_k > 0 else 0,
        seed=spec.seed,
        ignore_eos=spec.ignore_eos,
        logprobs=spec.logprobs,
        detokenize=False,
        output_kind=RequestOutputKind.DELTA,
        extra_args=extra or None,
        **penalties,
    )


class EngineAdapter:
    """An async vLLM engine with the request model of this project."""

    def __init__(self, config: EngineConfig) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.config = config
        self.device = resolve_device(config.device)
        # Adapter key (`NAME@VERSION`, GenerationRequest.adapter_key) → its LoRA id and files.
        self._adapters: dict[str, tuple[int, Path]] = {}
        cpu_priority.restore_normal()  # before the engine's processes start: they inherit it
        shm_janitor.watch(os.getpid())
        self._engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_args(config)))
        cpu_priority.yield_to_engines()  # this process only relays to and from them

    @property
    def adapters(self) -> list[str]:
        return sorted(self._adapters)

    @property
    def kv_dtype_bytes(self) -> int:
        """Bytes per element of this engine's KV cache, as vLLM chose its dtype."""
        from vllm.utils.torch_utils import get_kv_cache_torch_dtype

        vllm_config = self._engine.vllm_config
        dtype = get_kv_cache_torch_dtype(
            vllm_config.cache_config.cache_dtype, vllm_config.model_config.dtype
        )
        return dtype.itemsize

    def add_adapter(self, key: str, lora_id: int, path: Path) -> None:
        """Makes a LoRA adapter available under `key` (`NAME@VERSION`); `lora_id`: a number
        > 0 that no other adapter of this engine has. vLLM loads the files on first use."""
        self._adapters[key] = (lora_id, Path(path))

    async def remove_adapter(self, key: str) -> None:
        """Takes an adapter out of the engine (its LoRA slot and CPU cache as well)."""
        lora_id, _ = self._adapters.pop(key)
        await self._engine.remove_lora(lora_id)

    def _lora_request(self, request: GenerationRequest):
        key = request.adapter_key
        if key is None:
            return None
        if key not in self._adapters:
            raise UnknownAdapterError(request.adapter)
        from vllm.lora.request import LoRARequest

        lora_id, path = self._adapters[key]
        return LoRARequest(key, lora_id, str(path))

    def tokenize(self, text: str) -> list[int]:
        return self._engine.get_tokenizer().encode(text)

    async def generate(
        self,
        request: GenerationRequest,
        kv_transfer_params: dict | None = None,
        prior_output: int = 0,
    ) -> AsyncIterator[TokenDelta]:
        """Streams the request's output token ids; the last delta carries the finish reason.

        `kv_transfer_params` instructs the engine's KV connector (produce or consume KV);
        `prior_output` says how many of the prompt's last tokens are output tokens that
        another engine generated (see `vllm_sampling_params`).
        """
        lora = self._lora_request(request)
        if request.prompt_token_ids:
            prompt: dict = {"prompt_token_ids": list(request.prompt_token_ids)}
        else:
            prompt = {"prompt": request.prompt}
        completion_tokens = 0
        params = vllm_sampling_params(request.sampling, kv_transfer_params, prior_output)
        async for output in self._engine.generate(
            prompt, params, request.request_id, lora_request=lora
        ):
            step = output.outputs[0]
            completion_tokens += len(step.token_ids)
            finish = _FINISH_REASONS.get(step.finish_reason) if output.finished else None
            if output.finished and finish is None:
                finish = FinishReason.ERROR
            yield TokenDelta(
                request_id=request.request_id,
                text="",  # the request's owner detokenizes (`vllm_sampling_params`)
                token_ids=tuple(step.token_ids),
                finish_reason=finish,
                prompt_tokens=len(output.prompt_token_ids or ()),
                completion_tokens=completion_tokens,
                cached_tokens=output.num_cached_tokens or 0,
            )

    async def abort(self, request_id: str) -> None:
        await self._engine.abort(request_id)

    def kv_capacity_tokens(self) -> int:
        """Tokens the engine's KV cache holds (its blocks times the block size)."""
        cache = self._engine.vllm_config.cache_config
        return (cache.num_gpu_blocks or 0) * cache.block_size

    def stats(self) -> EngineStats:
        return EngineStats(
            unfinished_requests=self._engine.get_num_unfinished_requests(),
            queued_tokens=self._engine.get_num_queued_tokens(),
        )

    def shutdown(self) -> None:
        self._engine.shutdown()
