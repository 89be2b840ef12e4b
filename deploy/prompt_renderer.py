"""Turns an OpenAI prompt or chat into token ids, and enforces the context limit.

The front door tokenizes once, with the model's own tokenizer and chat template, so every
later stage (scheduler, prefill, KV page keys) works on the same token ids.

Tokenizing takes about a second per megabyte (the front door runs it in a worker thread), so
a text that cannot fit the context is refused before it is tokenized: no token of the
vocabulary spells more than `max_token_bytes` bytes of text, so a text of B bytes has at
least B // max_token_bytes tokens. The bound is the longest vocabulary entry's UTF-8
length times `NORMALIZER_MARGIN`, for tokenizers whose normalizer shortens text before it
is split; it never refuses a prompt that fits.
"""

from __future__ import annotations

from pathlib import Path

from deploy.openai_protocol import ChatMessage, bad_request

DEFAULT_COMPLETION_TOKENS = 16
# How many times a tokenizer's normalizer may shorten a text before splitting it (a
# full-width letter, 3 bytes, becomes 1 under NFKC).
NORMALIZER_MARGIN = 4


class PromptRenderer:
    def __init__(self, model_dir: Path, max_model_len: int) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.max_model_len = max_model_len
        self.vocab_size = len(self.tokenizer)
        longest = max(len(piece.encode()) for piece in self.tokenizer.get_vocab())
        self.max_token_bytes = NORMALIZER_MARGIN * max(longest, 1)

    def completion_tokens(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            self._refuse_beyond_context(len(prompt.encode()))
            return self.tokenizer(prompt)["input_ids"]
        if any(not 0 <= t < self.vocab_size for t in prompt):
            raise bad_request(f"prompt token ids must lie in [0, {self.vocab_size})", "prompt")
        return list(prompt)

    def chat_tokens(self, messages: list[ChatMessage]) -> list[int]:
        conversation = [{"role": m.role, "content": m.text()} for m in messages]
        self._refuse_beyond_context(sum(len(turn["content"].encode()) for turn in conversation))
        rendered = self.tokenizer.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=False
        )
        return self.tokenizer(rendered, add_special_tokens=False)["input_ids"]

    def _refuse_beyond_context(self, text_bytes: int) -> None:
        """A 400, without tokenizing, for text that has more tokens than the context."""
        at_least = text_bytes // self.max_token_bytes
        if at_least >= self.max_model_len:
            raise bad_request(
                f"This model's maximum context length is {self.max_model_len} tokens. "
                f"However, your prompt has at least {at_least} tokens ({text_bytes} bytes).",
                "prompt",
            )

    def max_tokens(self, prompt_len: int, requested: int | None, default: int | None) -> int:
        """The number of tokens to generate; refuses what does not fit the context."""
        room = self.max_model_len - prompt_len
        if room <= 0:
            raise bad_request(
                f"This model's maximum context length is {self.max_model_len} tokens. "
                f"However, your prompt has {prompt_len} tokens.",
                "prompt",
            )
        wanted = requested or default or room
        if wanted > room:
            raise bad_request(
                f"This model's maximum context length is {self.max_model_len} tokens. "
                f"However, you requested {prompt_len + wanted} tokens "
                f"({prompt_len} in the prompt, {wanted} for the completion).",
                "max_tokens",
            )
        return wanted
