"""The client's text from engine token ids: vLLM's detokenizer over the whole output, stop
strings found wherever they fall, across the prefill's first token and the decode's rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.request.output_text import OutputText, load_tokenizer
from cluster.request import FinishReason, GenerationRequest, SamplingSpec, TokenDelta

WORDS = "serve the prefill and decode of every token through memory pages"


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path):
    return load_tokenizer(str(tiny_model))


def _output(tokenizer, **sampling) -> OutputText:
    prompt = tuple(tokenizer.encode("Tell me"))
    return OutputText(
        tokenizer,
        GenerationRequest("r", prompt_token_ids=prompt, sampling=SamplingSpec(**sampling)),
    )


def _step(ids: list[int], finish: FinishReason | None = None) -> TokenDelta:
    return TokenDelta("r", "", tuple(ids), finish)


def test_a_stop_string_across_the_first_token_ends_the_output_there(tokenizer) -> None:
    ids = tokenizer.encode(" " + WORDS, add_special_tokens=False)
    full = tokenizer.decode(ids)
    first_text = tokenizer.decode(ids[:1])
    stop = full[len(first_text) - 2 : len(first_text) + 3]  # begins in the first token
    output = _output(tokenizer, max_tokens=32, stop=(stop,))
    first = output.add(_step(ids[:1]))  # the prefill's token alone
    rest = output.add(_step(ids[1:]))  # the decode's next message, many tokens at once
    assert first.text + rest.text == full[: full.index(stop)]
    assert rest.finish_reason is FinishReason.STOP and output.finished
    # Kept: the tokens up to the one that completed the stop string; the rest is dropped.
    kept = len(first.token_ids) + len(rest.token_ids)
    assert tokenizer.decode(ids[: kept - 1]).find(stop) == -1
    assert stop in tokenizer.decode(ids[:kept])
    assert rest.completion_tokens == kept < len(ids)


def test_without_a_stop_the_text_is_the_whole_decode(tokenizer) -> None:
    ids = tokenizer.encode(" " + WORDS, add_special_tokens=False)
    output = _output(tokenizer, max_tokens=len(ids))
    parts = [
        output.add(_step(ids[:1])),
        output.add(_step(ids[1:5])),
        output.add(_step(ids[5:], FinishReason.LENGTH)),
    ]
    assert "".join(p.text for p in parts) == tokenizer.decode(ids)
    assert [p.completion_tokens for p in parts] == [1, 5, len(ids)]
    assert parts[-1].finish_reason is FinishReason.LENGTH


def test_half_a_character_from_the_prefill_is_completed_by_the_decode(tokenizer) -> None:
    head, tail = tokenizer.convert_tokens_to_ids(["Ã", "©"])  # the two bytes of "é"
    output = _output(tokenizer, max_tokens=4)
    held = output.add(_step([head]))
    assert (held.text, held.token_ids) == ("", (head,))
    assert output.add(_step([tail])).text == "é"


def test_the_engines_end_of_sequence_is_counted_but_not_shown(tokenizer) -> None:
    ids = tokenizer.encode(" serve", add_special_tokens=False)
    output = _output(tokenizer, max_tokens=8)
    end = output.add(_step([*ids, tokenizer.eos_token_id], FinishReason.STOP))
    assert end.text == tokenizer.decode(ids)
    assert (end.completion_tokens, end.finish_reason) == (len(ids) + 1, FinishReason.STOP)


def test_stop_strings_wait_for_min_tokens(tokenizer) -> None:
    ids = tokenizer.encode(" serve serve serve serve", add_special_tokens=False)
    stop = "serve"
    output = _output(tokenizer, max_tokens=16, stop=(stop,), min_tokens=len(ids) - 1)
    shown = output.add(_step(ids))
    assert shown.finish_reason is FinishReason.STOP
    assert shown.completion_tokens == len(ids)
