"""A request's output as its client sees it: token ids from the engines in, text out.

Engines return token ids only (actors/engine/adapter.py). The request's owner turns them into
text with vLLM's own incremental detokenizer, primed with the prompt, and checks stop strings
over the whole output, whichever engine made each token: a stop string that spans the
prefill's first token and the decode's next ones ends the request where one plain vLLM engine
would end it, its text cut as vLLM cuts it, and tokens generated after it are dropped. A stop
string found here ends the request while its engine still runs; the owner then cancels it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cluster.request import FinishReason, GenerationRequest, TokenDelta


@lru_cache(maxsize=4)
def load_tokenizer(model_dir: str) -> Any:
    """The tokenizer vLLM's engines use for this model, loaded once per process."""
    from vllm.tokenizers import get_tokenizer

    return get_tokenizer(str(Path(model_dir)))


@dataclass(frozen=True, slots=True)
class _DetokenizerRequest:
    """What vLLM's detokenizer reads of an engine request."""

    request_id: str
    prompt_token_ids: list[int]
    sampling_params: Any


class OutputText:
    def __init__(self, tokenizer: Any, request: GenerationRequest) -> None:
        from vllm import SamplingParams
        from vllm.v1.engine.detokenizer import IncrementalDetokenizer

        spec = request.sampling
        params = SamplingParams(
            max_tokens=spec.max_tokens, min_tokens=spec.min_tokens, stop=list(spec.stop) or None
        )
        prompt = list(request.prompt_token_ids)
        self.prompt_tokens = len(prompt)
        self._detokenizer = IncrementalDetokenizer.from_new_request(
            tokenizer, _DetokenizerRequest(request.request_id, prompt, params)
        )
        self.finish_reason: FinishReason | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def tokens(self) -> int:
        return self._detokenizer.num_output_tokens()

    def add(self, step: TokenDelta) -> TokenDelta:
        """The client's delta for an engine's: its text, the tokens kept (none after a stop
        string), and the finish reason (STOP when a stop string ended the output)."""
        before = self.tokens
        engine_stopped = step.finish_reason is FinishReason.STOP
        stop_string = self._detokenizer.update(list(step.token_ids), engine_stopped)
        self.finish_reason = FinishReason.STOP if stop_string is not None else step.finish_reason
        text = self._detokenizer.get_next_output_text(self.finished, delta=True)
        return dataclasses.replace(
            step,
            text=text,
            token_ids=tuple(self._detokenizer.output_token_ids[before:]),
            finish_reason=self.finish_reason,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.tokens,
        )
