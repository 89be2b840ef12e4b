"""The OpenAI-compatible wire format of the front door: request schemas and response bodies.

Requests are validated here (types and ranges) before anything reaches a scheduler; a
failure becomes an `APIError` that the app renders as an OpenAI-style error body.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cluster.request import FinishReason, SamplingSpec

MAX_LOGPROBS = 0  # log-probabilities are not served yet; any positive request is refused
# vLLM's seed range (a 64-bit signed integer); the wire carries it as int64.
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
# OpenAI parameters this server does not serve, each with the values that ask for nothing
# (sent with any other value, the request is refused with a 400 rather than served as if
# the parameter had not been sent).
UNSERVED_PARAMETERS: dict[str, tuple[Any, ...]] = {
    "best_of": (None, 1),
    "logit_bias": (None, {}),
    "response_format": (None, {"type": "text"}),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "functions": (None, []),
    "function_call": (None, "none"),
    "echo": (None, False),
    "suffix": (None, ""),
    "guided_json": (None,),
    "guided_regex": (None,),
    "guided_choice": (None,),
    "guided_grammar": (None,),
    "use_beam_search": (None, False),
}
M = TypeVar("M", bound=BaseModel)
# Seconds a client refused for load should wait before trying again (a 429's Retry-After).
RETRY_AFTER_S = 1


class APIError(Exception):
    """An error with its HTTP status and OpenAI error type."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.status,
            }
        }


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, "BadRequestError", param)


def overloaded(message: str) -> APIError:
    """A 429 that tells the client when to try again (`RETRY_AFTER_S`)."""
    return APIError(429, message, "RateLimitError", headers={"Retry-After": str(RETRY_AFTER_S)})


def model_not_found(model: str) -> APIError:
    return APIError(404, f"The model `{model}` does not exist.", "NotFoundError", "model")


def validated(schema: type[M], payload: dict[str, Any]) -> M:
    """`payload` checked against `schema`; the first problem found becomes a 400, and so
    does a parameter this server does not serve (UNSERVED_PARAMETERS)."""
    for name, idle_values in UNSERVED_PARAMETERS.items():
        if name in payload and payload[name] not in idle_values:
            raise bad_request(f"{name}: not supported by this server", name)
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise bad_request(f"{param}: {first['msg']}", param) from None


class _SamplingFields(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=-1)
    n: int = Field(default=1, ge=1, le=1)
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    stop: str | list[str] | None = None
    ignore_eos: bool = False
    logprobs: int | bool | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    # vLLM's ranges: the same values are refused with a 400 there.
    min_tokens: int = Field(default=0, ge=0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0, allow_inf_nan=False)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0, allow_inf_nan=False)
    repetition_penalty: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)

    @field_validator("stop")
    @classmethod
    def _stop_strings_not_empty(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is not None and "" in ([value] if isinstance(value, str) else value):
            raise ValueError("stop strings must not be empty")
        return value

    @field_validator("logprobs")
    @classmethod
    def _logprobs_in_range(cls, value: int | bool | None) -> int | bool | None:
        if value is not None and int(value) > MAX_LOGPROBS:
            raise ValueError(f"logprobs must be at most {MAX_LOGPROBS} on this server")
        return value

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))

    def sampling(self, max_tokens: int) -> SamplingSpec:
        """The request's sampling once its token budget is known; refuses a `min_tokens`
        above it, as vLLM does."""
        if self.min_tokens > max_tokens:
            raise bad_request(
                f"min_tokens ({self.min_tokens}) must be at most max_tokens ({max_tokens})",
                "min_tokens",
            )
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return SamplingSpec(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=max(self.top_k or 0, 0),
            seed=self.seed,
            stop=stop,
            ignore_eos=self.ignore_eos,
            min_tokens=self.min_tokens,
            frequency_penalty=self.frequency_penalty,
            presence_penalty=self.presence_penalty,
            repetition_penalty=self.repetition_penalty,
        )


class CompletionRequest(_SamplingFields):
    prompt: str | list[int]

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty(cls, value: str | list[int]) -> str | list[int]:
        if len(value) == 0:
            raise ValueError("prompt must not be empty")
        return value


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]]

    @field_validator("content")
    @classmethod
    def _text_parts_only(cls, value: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        if isinstance(value, list):
            for part in value:
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ValueError(
                        f"only text content parts are supported, got {part.get('type')!r}"
                    )
        return value

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part["text"] for part in self.content)


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def finish_reason(reason: FinishReason | None) -> str | None:
    return None if reason is None else str(reason)


def completion_body(
    request_id: str, model: str, text: str, reason: FinishReason | None, use: dict, chunk: bool
) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason(reason)}
        ],
        **({} if chunk and not use else {"usage": use}),
    }


def chat_body(
    request_id: str, model: str, text: str, reason: FinishReason | None, use: dict, chunk: bool
) -> dict[str, Any]:
    if chunk:
        choice = {"index": 0, "delta": {"role": "assistant", "content": text}}
    else:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}}
    choice |= {"logprobs": None, "finish_reason": finish_reason(reason)}
    return {
        "id": request_id,
        "object": "chat.completion.chunk" if chunk else "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        **({} if chunk and not use else {"usage": use}),
    }


class LoadLoraAdapterBody(BaseModel):
    """`POST /v1/load_lora_adapter`, as vLLM's server takes it."""

    model_config = ConfigDict(extra="ignore")

    lora_name: str
    lora_path: str


class UnloadLoraAdapterBody(BaseModel):
    """`POST /v1/unload_lora_adapter`, as vLLM's server takes it."""

    model_config = ConfigDict(extra="ignore")

    lora_name: str
