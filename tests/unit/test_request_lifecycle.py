"""Every transition of a request's life, failure edges included, without Ray."""

from __future__ import annotations

import pytest

from cluster.request import FinishReason
from cluster.request_lifecycle import (
    CancelDecode,
    CancelPrefill,
    Dispatch,
    DispatchAgain,
    Holder,
    InstanceLost,
    InvalidTransition,
    LeftPrefill,
    PlaceAgain,
    ReleaseLease,
    Report,
    RequestLife,
    Stage,
)


def _prefilling() -> RequestLife:
    life = RequestLife("r")
    assert life.placed("prefill-0") == []
    assert life.prefill_started() == []
    return life


def _decoding() -> RequestLife:
    life = _prefilling()
    assert life.first_token(1) == [LeftPrefill()]
    assert life.decode_task("lease-1", "decode-0") == [Dispatch("decode-0")]
    assert life.tokens(3) == []
    return life


def test_a_request_goes_through_every_stage_in_order() -> None:
    life = _decoding()
    life.decode_ended()
    actions = life.finish(FinishReason.LENGTH)
    assert actions == [Report(FinishReason.LENGTH, 4, "prefill-0")]
    assert [*life.history, life.stage] == [
        Stage.PLACING,
        Stage.QUEUED,
        Stage.PREFILLING,
        Stage.KV_SAVED,
        Stage.LEASED,
        Stage.DISPATCHED,
        Stage.DECODING,
        Stage.FINISHED,
    ]
    assert life.lease_holder is Holder.DECODE  # the decode instance releases it
    assert life.close() == []


def test_the_lease_passes_from_prefill_to_owner_to_decode() -> None:
    life = _prefilling()
    assert life.lease_holder is Holder.PREFILL
    life.first_token(1)
    assert life.lease_holder is Holder.PREFILL
    life.decode_task("lease-1", "decode-0")
    assert (life.lease_id, life.lease_holder, life.decode_open) == ("lease-1", Holder.DECODE, True)


def test_a_first_token_that_ends_the_output_waits_for_the_lease_and_releases_it() -> None:
    life = _prefilling()
    life.first_token(1)
    assert life.finish(FinishReason.STOP) == [Report(FinishReason.STOP, 1, "prefill-0")]
    assert life.prefill_open  # the lease comes with the prefill stream's last message
    assert life.decode_task("lease-1", "decode-0") == [ReleaseLease("lease-1")]
    assert (life.stage, life.prefill_open, life.lease_holder) == (
        Stage.FINISHED,
        False,
        Holder.NOBODY,
    )


def test_the_engine_ending_at_the_first_token_leaves_nothing_to_release() -> None:
    life = _prefilling()
    life.first_token(1)
    life.finish(FinishReason.LENGTH)
    assert life.decode_task("", "") == []
    assert life.close() == []


def test_a_lease_without_a_decode_instance_goes_back_at_once() -> None:
    life = _prefilling()
    life.first_token(1)
    actions = life.decode_task("lease-1", "")
    assert actions == [ReleaseLease("lease-1"), Report(FinishReason.LENGTH, 1, "prefill-0")]
    assert life.stage is Stage.FINISHED


def test_a_stop_string_in_the_decode_stream_cancels_the_decode() -> None:
    life = _decoding()
    actions = life.finish(FinishReason.STOP)
    assert actions == [
        CancelDecode("decode-0"),
        ReleaseLease("lease-1"),  # in case the cancelled call never started
        Report(FinishReason.STOP, 4, "prefill-0"),
    ]
    assert not life.decode_open


def test_a_prefill_lost_before_any_token_is_placed_again_then_fails() -> None:
    life = _prefilling()
    assert life.instance_lost("prefill-0", "died") == [InstanceLost("prefill-0"), PlaceAgain(2)]
    assert (life.stage, life.prefill_instance, life.lease_holder) == (
        Stage.PLACING,
        None,
        Holder.NOBODY,
    )
    life.placed("prefill-1")
    assert (life.stage, life.attempts) == (Stage.QUEUED, 2)
    actions = life.instance_lost("prefill-1", "died too")
    assert actions == [InstanceLost("prefill-1"), Report(FinishReason.ERROR, 0, "prefill-1")]
    assert (life.stage, life.error) == (Stage.FAILED, "died too")


def test_a_prefill_lost_after_its_first_token_is_dispatched_to_a_decode_instance() -> None:
    life = _prefilling()
    life.first_token(1)
    assert life.instance_lost("prefill-0", "died") == [InstanceLost("prefill-0"), DispatchAgain(1)]
    assert (life.stage, life.prefill_open, life.lease_holder) == (
        Stage.LEASED,
        False,
        Holder.NOBODY,
    )
    assert life.dispatched_again("decode-0") == [Dispatch("decode-0")]
    assert life.decode_open and life.decode_attempts == 1


def test_a_lost_decode_is_dispatched_again_from_the_tokens_made() -> None:
    life = _decoding()
    assert life.instance_lost("decode-0", "died") == [InstanceLost("decode-0"), DispatchAgain(2)]
    assert (life.stage, life.lease_holder, life.decode_open) == (
        Stage.LEASED,
        Holder.NOBODY,  # the dead instance's lease is left to expire
        False,
    )
    assert life.dispatched_again("decode-1") == [Dispatch("decode-1")]
    assert (life.stage, life.decode_instance, life.decode_open) == (
        Stage.DISPATCHED,
        "decode-1",
        True,
    )
    assert life.tokens(2) == []
    life.decode_ended()
    assert life.finish(FinishReason.LENGTH) == [Report(FinishReason.LENGTH, 6, "prefill-0")]


def test_a_lost_decode_fails_once_its_attempts_are_spent() -> None:
    life = _decoding()
    life.instance_lost("decode-0", "died")
    life.dispatched_again("decode-1")
    assert life.instance_lost("decode-1", "died too") == [
        InstanceLost("decode-1"),
        Report(FinishReason.ERROR, 4, "prefill-0"),
    ]
    assert (life.stage, life.error) == (Stage.FAILED, "died too")


def test_no_decode_instance_to_continue_on_fails_the_request() -> None:
    life = _decoding()
    life.instance_lost("decode-0", "died")
    assert life.dispatched_again(None) == [Report(FinishReason.ERROR, 4, "prefill-0")]
    assert life.stage is Stage.FAILED and "no decode instance" in life.error


def test_a_dispatch_again_in_any_other_stage_is_invalid() -> None:
    with pytest.raises(InvalidTransition):
        _decoding().dispatched_again("decode-1")


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        (Stage.QUEUED, [CancelPrefill("prefill-0")]),
        (Stage.PREFILLING, [CancelPrefill("prefill-0")]),
        (Stage.KV_SAVED, [CancelPrefill("prefill-0")]),
        (Stage.DECODING, [CancelDecode("decode-0"), ReleaseLease("lease-1")]),
    ],
)
def test_a_client_gone_cancels_what_is_open(stage: Stage, expected: list) -> None:
    life = RequestLife("r")
    life.placed("prefill-0")
    steps = {
        Stage.PREFILLING: [life.prefill_started],
        Stage.KV_SAVED: [life.prefill_started, lambda: life.first_token(1)],
        Stage.DECODING: [
            life.prefill_started,
            lambda: life.first_token(1),
            lambda: life.decode_task("lease-1", "decode-0"),
            lambda: life.tokens(1),
        ],
    }
    for step in steps.get(stage, []):
        step()
    assert life.stage is stage
    actions = life.close()
    assert actions[:-1] == expected
    assert isinstance(actions[-1], Report) and actions[-1].finish_reason is FinishReason.ABORT
    assert life.stage is Stage.FAILED and life.close() == []


def test_a_client_gone_after_the_first_token_ended_the_output_still_frees_the_lease() -> None:
    life = _prefilling()
    life.first_token(1)
    life.finish(FinishReason.STOP)
    assert life.close() == [CancelPrefill("prefill-0")]  # it releases a lease it still holds


def test_fail_is_final_and_said_once() -> None:
    life = _decoding()
    assert life.fail("decode engine error") == [
        CancelDecode("decode-0"),
        ReleaseLease("lease-1"),
        Report(FinishReason.ERROR, 4, "prefill-0"),
    ]
    assert life.fail("again") == []
    assert life.error == "decode engine error"


@pytest.mark.parametrize(
    "event",
    [
        lambda life: life.first_token(1),  # still queued
        lambda life: life.tokens(1),
        lambda life: life.decode_task("lease", "decode-0"),
        lambda life: life.finish(FinishReason.STOP),
        lambda life: life.placed("prefill-1"),
    ],
)
def test_an_event_out_of_order_is_refused(event) -> None:
    life = RequestLife("r")
    life.placed("prefill-0")
    with pytest.raises(InvalidTransition):
        event(life)
    assert life.stage is Stage.QUEUED
