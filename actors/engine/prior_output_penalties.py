"""Penalties that count output tokens a decode engine received as part of its prompt.

A decode instance continues a request from its prompt plus the tokens the prefill engine
already generated (its first token). vLLM counts frequency and presence penalties over a
request's output only, so those tokens, now at the end of the decode engine's prompt,
would escape them. For such a request the engine adapter (actors/engine/adapter.py) turns
the engine's own penalties off and names them, with how many prompt tokens are really
output, in `SamplingParams.extra_args[PRIOR_OUTPUT]`; this logits processor, loaded into
every engine through vLLM's `logits_processors`, then applies them with vLLM's own
`apply_penalties` over (prompt, prior output + output). vLLM runs it where it would run its
penalties (after logit bias and min-tokens, before temperature), so greedy text with
penalties is what one plain vLLM engine gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from vllm.model_executor.layers.utils import apply_penalties
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.config import VllmConfig

PRIOR_OUTPUT = "tetriserve_prior_output"
QUALNAME = f"{__name__}:PriorOutputPenalties"


def penalties_args(
    prior_tokens: int, frequency: float, presence: float, repetition: float
) -> dict[str, float]:
    """The `extra_args[PRIOR_OUTPUT]` value for a request."""
    return {
        "tokens": prior_tokens,
        "frequency": frequency,
        "presence": presence,
        "repetition": repetition,
    }


@dataclass(slots=True)
class _Row:
    prompt: list[int]  # the request's own prompt, without the prior output
    prior: list[int]
    output: list[int]  # the engine's live list of the tokens it generated
    frequency: float
    presence: float
    repetition: float


def _row(params: SamplingParams, prompt: list[int] | None, output: list[int]) -> _Row | None:
    spec = (params.extra_args or {}).get(PRIOR_OUTPUT)
    if not spec or prompt is None:
        return None
    split = len(prompt) - int(spec["tokens"])
    return _Row(
        prompt[:split],
        prompt[split:],
        output,
        float(spec["frequency"]),
        float(spec["presence"]),
        float(spec["repetition"]),
    )


class PriorOutputPenalties(LogitsProcessor):
    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool):
        self.device = device
        self.rows: dict[int, _Row] = {}

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self.rows, batch_update, _row)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        vocab = logits.shape[1]
        for index, row in self.rows.items():
            prompt = torch.tensor([row.prompt or [vocab]], dtype=torch.int64, device=self.device)
            output = torch.tensor([row.prior + row.output], dtype=torch.int64, device=self.device)
            output.masked_fill_(output < 0, vocab)  # placeholders of tokens still in flight
            logits[index : index + 1] = apply_penalties(
                logits[index : index + 1],
                prompt,
                output,
                torch.tensor([row.presence], device=self.device),
                torch.tensor([row.frequency], device=self.device),
                torch.tensor([row.repetition], device=self.device),
            )
        return logits
