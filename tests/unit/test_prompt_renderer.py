"""The front door's prompt renderer: token ids, and text too long for the context refused
before it is tokenized, never a prompt that fits."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.openai_protocol import APIError, ChatMessage
from deploy.prompt_renderer import PromptRenderer

MAX_MODEL_LEN = 64


@pytest.fixture(scope="module")
def renderer(tiny_model: Path) -> PromptRenderer:
    return PromptRenderer(tiny_model, MAX_MODEL_LEN)


def test_no_vocabulary_entry_is_longer_than_the_bound(renderer: PromptRenderer) -> None:
    for piece, token_id in renderer.tokenizer.get_vocab().items():
        text = renderer.tokenizer.decode([token_id])
        assert len(text.encode()) <= renderer.max_token_bytes, piece


def test_the_longest_text_that_may_fit_is_tokenized(renderer: PromptRenderer) -> None:
    # Just under the bound: refused only after tokenizing, by its true length.
    text = "x" * (renderer.max_token_bytes * MAX_MODEL_LEN - 1)
    tokens = renderer.completion_tokens(text)
    assert len(tokens) > MAX_MODEL_LEN
    with pytest.raises(APIError) as refused:
        renderer.max_tokens(len(tokens), None, 16)
    assert refused.value.status == 400


def test_a_short_prompt_is_served(renderer: PromptRenderer) -> None:
    tokens = renderer.completion_tokens("a short prompt")
    assert 0 < len(tokens) < MAX_MODEL_LEN
    assert renderer.max_tokens(len(tokens), 8, 16) == 8


class FakeTokenizerThatMustNotRun:
    """Stands in for the tokenizer where a text must be refused before tokenizing."""

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("the text was tokenized")

    apply_chat_template = __call__


def test_megabytes_of_text_are_refused_without_tokenizing(
    renderer: PromptRenderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(renderer, "tokenizer", FakeTokenizerThatMustNotRun())
    with pytest.raises(APIError) as refused:
        renderer.completion_tokens("word " * 4_000_000)  # 20 MB: tens of seconds to tokenize
    assert refused.value.status == 400
    assert refused.value.param == "prompt"
    assert "at least" in refused.value.message


def test_a_chat_too_long_for_the_context_is_refused_before_its_template(
    renderer: PromptRenderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(renderer, "tokenizer", FakeTokenizerThatMustNotRun())
    huge = ChatMessage(role="user", content="word " * 4_000_000)
    with pytest.raises(APIError) as refused:
        renderer.chat_tokens([ChatMessage(role="system", content="be brief"), huge])
    assert refused.value.status == 400
