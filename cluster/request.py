"""The request model: plain data that every stage of the request path passes along.

The ingress turns an HTTP or gRPC call into a `GenerationRequest`; instances stream back
`TokenDelta`s. Wire messages (proto/) are converted to and from these types in exactly one
place (actors/wire.py); nothing here knows about Ray, vLLM or gRPC.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

BASE_MODEL_NAME = "base"


class FinishReason(enum.StrEnum):
    LENGTH = "length"
    STOP = "stop"
    ABORT = "abort"
    ERROR = "error"


# Seeds live in [0, 2**63): the continuation's seed is derived inside the same range.
SEED_LIMIT = 1 << 63


@dataclass(frozen=True, slots=True)
class SamplingSpec:
    """Sampling settings, validated at the front door. Greedy by default."""

    max_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    logprobs: int | None = None
    min_tokens: int = 0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0

    def continued(self, generated: int) -> SamplingSpec:
        """The sampling of what is left once `generated` tokens were made elsewhere (the
        prefill's first token): fewer tokens to go, and a seeded request's own seed moved
        on, so that the rest does not replay the random draws of its first tokens."""
        seed = None if self.seed is None else (self.seed + generated) % SEED_LIMIT
        return dataclasses.replace(
            self,
            max_tokens=self.max_tokens - generated,
            min_tokens=max(self.min_tokens - generated, 0),
            seed=seed,
        )

    @property
    def penalises_output(self) -> bool:
        """Frequency or presence penalties: they count the tokens generated so far."""
        return self.frequency_penalty != 0.0 or self.presence_penalty != 0.0


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One generation: a prompt (text, token ids, or both) under an optional LoRA adapter."""

    request_id: str
    prompt: str = ""
    prompt_token_ids: tuple[int, ...] = ()
    adapter: str | None = None
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    trace_id: str = ""
    # The adapter store's version of `adapter`: each load of an adapter gets its own.
    adapter_version: int = 0

    @property
    def model_name(self) -> str:
        return f"{BASE_MODEL_NAME}:{self.adapter}" if self.adapter else BASE_MODEL_NAME

    @property
    def adapter_key(self) -> str | None:
        """The adapter and its version, `NAME@VERSION`: what engines and KV pages tell
        apart, so that an adapter loaded again under the same name is a new one to them."""
        return f"{self.adapter}@{self.adapter_version}" if self.adapter else None

    def continued(self, generated: Sequence[int]) -> GenerationRequest:
        """The rest of this request once `generated` tokens were made elsewhere: they
        follow the prompt, and fewer tokens are left to make."""
        return dataclasses.replace(
            self,
            prompt_token_ids=self.prompt_token_ids + tuple(generated),
            sampling=self.sampling.continued(len(generated)),
        )


@dataclass(frozen=True, slots=True)
class TokenDelta:
    """A step of the token stream; the last one of a request has `finish_reason` set."""

    request_id: str
    text: str
    token_ids: tuple[int, ...]
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Prompt tokens whose KV the engine did not compute (prefix cache or KV transfer).
    cached_tokens: int = 0
    error: str = ""

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


def merge_deltas(deltas: Sequence[TokenDelta]) -> TokenDelta:
    """Consecutive deltas of one request as one: texts and tokens joined in order, the
    counts, finish reason and error of the last."""
    last = deltas[-1]
    return dataclasses.replace(
        last,
        text="".join(delta.text for delta in deltas),
        token_ids=tuple(token for delta in deltas for token in delta.token_ids),
    )


def parse_model_name(model: str) -> str | None:
    """Splits an OpenAI `model` field into the adapter name; `base` alone means no adapter.

    Raises ValueError for anything that is not `base` or `base:ADAPTER`.
    """
    head, sep, adapter = model.partition(":")
    if head != BASE_MODEL_NAME or (sep and not adapter):
        raise ValueError(
            f"model must be '{BASE_MODEL_NAME}' or '{BASE_MODEL_NAME}:ADAPTER', got {model!r}"
        )
    return adapter or None
