"""The hand-over of a greedy request's first token from the prefill to the decode stream."""

from __future__ import annotations

from actors.request.request_path import _without_first_token
from cluster.request import FinishReason, TokenDelta

FIRST = TokenDelta("r", " spund", (41,), FinishReason.LENGTH, completion_tokens=1)


def test_a_merged_first_decode_delta_keeps_everything_after_the_first_token() -> None:
    merged = TokenDelta("r", " spund lyState", (41, 7, 9), completion_tokens=3)
    rest = _without_first_token(merged, FIRST)
    assert (rest.text, rest.token_ids, rest.completion_tokens) == (" lyState", (7, 9), 3)
    assert rest.finish_reason is None


def test_the_repeated_first_token_alone_leaves_nothing_to_send() -> None:
    alone = _without_first_token(TokenDelta("r", " spund", (41,)), FIRST)
    assert (alone.text, alone.token_ids) == ("", ())


def test_text_held_back_by_the_prefill_comes_with_the_decode() -> None:
    held = TokenDelta("r", "", (200,), FinishReason.LENGTH)  # half of a UTF-8 character
    rest = _without_first_token(TokenDelta("r", "é", (200, 169)), held)
    assert (rest.text, rest.token_ids) == ("é", (169,))


def test_a_disagreeing_decode_ends_the_request_with_an_error() -> None:
    for other in (TokenDelta("r", " spund", (42,)), TokenDelta("r", " sp", (41,))):
        failed = _without_first_token(other, FIRST)
        assert failed.finish_reason is FinishReason.ERROR and "disagreed" in failed.error
        assert (failed.text, failed.token_ids) == ("", ())


def test_an_error_passes_through() -> None:
    error = TokenDelta("r", "", (), FinishReason.ERROR, error="engine died")
    assert _without_first_token(error, FIRST) == error
