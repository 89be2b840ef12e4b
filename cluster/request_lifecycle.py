"""One request's life behind the front door, as its one owner sees it.

    placing ─► queued ─► prefilling ─► kv_saved ─► leased ─► dispatched ─► decoding ─► finished
       ▲                    │                            ▲                      │     │
       └── placed again ◄───┘                            └──── dispatched again ◄┘     └─► failed
   (its prefill instance died before any token left)     (an instance died after a token left)

The owner is the request path in the ingress (actors/request/request_path.py). It feeds this
machine the events that the prefill and decode streams bring, and carries out the actions
each event returns: data such as `Dispatch` or `ReleaseLease`, in the spirit of a scheduler
output. Every edge, failure edges included, is decided here, so it is tested without Ray.

Who holds the KV lease is part of the state: the prefill instance takes it before its engine
runs and hands it over in the DecodeTask; the owner then holds it until a decode instance
has the request, which releases it once the KV is in its engine. Streams still open and a
lease still held are what an ending leaves behind, so every way out (finished, failed, or
the client gone: `close`) returns the actions that cancel and release them. A request whose
output ended with its first token still reads the prefill stream to its end, for the lease.

A decode instance that dies under a request does not end it: the owner asks the scheduler
for another decode instance, which continues from the prompt and every token already made
(it recomputes their KV: the lost instance may have released the lease). The client's
stream goes on where it stopped, and a greedy request's text is the same as without the
fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from cluster.request import FinishReason


class Stage(StrEnum):
    PLACING = "placing"  # waiting for the global scheduler's placement
    QUEUED = "queued"  # in a prefill instance's queue
    PREFILLING = "prefilling"  # in the prefill engine
    KV_SAVED = "kv_saved"  # the first token is out; the prompt's KV pages are sealed
    LEASED = "leased"  # the owner holds the lease that pins those pages
    DISPATCHED = "dispatched"  # a decode instance has the request and its lease
    DECODING = "decoding"  # the decode instance streams the rest
    FINISHED = "finished"
    FAILED = "failed"


TERMINAL = frozenset({Stage.FINISHED, Stage.FAILED})


class Holder(StrEnum):
    NOBODY = "nobody"
    PREFILL = "prefill"
    OWNER = "owner"
    DECODE = "decode"


@dataclass(frozen=True, slots=True)
class PlaceAgain:
    """Ask the global scheduler for another prefill instance."""

    attempt: int


@dataclass(frozen=True, slots=True)
class LeftPrefill:
    """Tell the global scheduler that the prefill instance is done with the request."""


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Send the DecodeTask (and with it the lease) to this decode instance."""

    instance: str


@dataclass(frozen=True, slots=True)
class DispatchAgain:
    """Ask the global scheduler for another decode instance; the request continues there
    from the tokens already made."""

    attempt: int


@dataclass(frozen=True, slots=True)
class CancelPrefill:
    instance: str


@dataclass(frozen=True, slots=True)
class CancelDecode:
    instance: str


@dataclass(frozen=True, slots=True)
class ReleaseLease:
    lease_id: str


@dataclass(frozen=True, slots=True)
class InstanceLost:
    """Tell the global scheduler that this instance died under a request: it places nothing
    there until the instance reports its load again."""

    instance: str


@dataclass(frozen=True, slots=True)
class Report:
    """The request left the cluster: the scheduler's count drops; a request that ran to its
    end teaches the prefill instance's length predictor its true output length."""

    finish_reason: FinishReason | None
    output_tokens: int
    prefill_instance: str | None


Action = (
    PlaceAgain
    | LeftPrefill
    | Dispatch
    | DispatchAgain
    | CancelPrefill
    | CancelDecode
    | ReleaseLease
    | InstanceLost
    | Report
)


class InvalidTransition(RuntimeError):
    """An event that cannot happen in the request's stage: a bug, or a confused instance."""


@dataclass(slots=True)
class RequestLife:
    request_id: str
    max_attempts: int = 2
    max_decode_attempts: int = 2
    stage: Stage = Stage.PLACING
    attempts: int = 0
    decode_attempts: int = 0
    prefill_instance: str | None = None
    decode_instance: str | None = None
    lease_id: str = ""
    lease_holder: Holder = Holder.NOBODY
    prefill_open: bool = False
    decode_open: bool = False
    tokens_sent: int = 0
    finish_reason: FinishReason | None = None
    error: str = ""
    history: list[Stage] = field(default_factory=list)

    # --- the prefill side ---------------------------------------------------------------------
    def placed(self, instance: str) -> list[Action]:
        self._expect(Stage.PLACING)
        self.attempts += 1
        self.prefill_instance = instance
        self.prefill_open = True
        self.lease_holder = Holder.PREFILL
        self._enter(Stage.QUEUED)
        return []

    def prefill_started(self) -> list[Action]:
        self._expect(Stage.QUEUED)
        self._enter(Stage.PREFILLING)
        return []

    def first_token(self, tokens: int) -> list[Action]:
        """The prefill engine's first token reached the owner: the KV of the prompt is
        sealed in memory nodes before a token leaves the engine."""
        self._expect(Stage.PREFILLING)
        self.tokens_sent += tokens
        self._enter(Stage.KV_SAVED)
        return [LeftPrefill()]

    def decode_task(self, lease_id: str, decode_instance: str) -> list[Action]:
        """The prefill stream's last message: the lease (empty when no page was saved) and
        the decode instance chosen (empty when the first token ended the request)."""
        self.prefill_open = False
        if self.stage is Stage.FINISHED:  # the output ended with the first token
            return self._release(lease_id)
        self._expect(Stage.KV_SAVED)
        self.lease_id = lease_id
        self.lease_holder = Holder.OWNER if lease_id else Holder.NOBODY
        self._enter(Stage.LEASED)
        if not decode_instance:
            return self._end(Stage.FINISHED, FinishReason.LENGTH)
        if lease_id:
            self.lease_holder = Holder.DECODE
        return self._dispatch(decode_instance)

    def dispatched_again(self, decode_instance: str | None) -> list[Action]:
        """The scheduler's answer to `DispatchAgain`: the decode instance that continues the
        request (None when there is none, and the request fails)."""
        self._expect(Stage.LEASED)
        if decode_instance is None:
            return self.fail("no decode instance is available to continue the request")
        return self._dispatch(decode_instance)

    def _dispatch(self, decode_instance: str) -> list[Action]:
        self.decode_instance = decode_instance
        self.decode_open = True
        self.decode_attempts += 1
        self._enter(Stage.DISPATCHED)
        return [Dispatch(decode_instance)]

    # --- the decode side ----------------------------------------------------------------------
    def tokens(self, count: int) -> list[Action]:
        """A message of the decode stream with `count` tokens the client will see."""
        if self.stage is Stage.DISPATCHED:
            self._enter(Stage.DECODING)
        self._expect(Stage.DECODING)
        self.tokens_sent += count
        return []

    def decode_ended(self) -> list[Action]:
        """The decode stream ended (its engine finished, or it was cancelled)."""
        self.decode_open = False
        return []

    # --- endings ------------------------------------------------------------------------------
    def finish(self, reason: FinishReason) -> list[Action]:
        """The output ended (the engine's end, or a stop string the owner found)."""
        if self.stage not in (Stage.KV_SAVED, Stage.DISPATCHED, Stage.DECODING):
            raise InvalidTransition(f"{self.request_id}: finish in stage {self.stage}")
        return self._end(Stage.FINISHED, reason)

    def fail(self, error: str) -> list[Action]:
        if self.stage in TERMINAL:
            return []
        self.error = error
        return self._end(Stage.FAILED, FinishReason.ERROR)

    def instance_lost(self, instance: str, error: str) -> list[Action]:
        """A prefill or decode instance died under the request. Before any token left, a
        lost prefill means another placement; after that (a prefill that died between its
        first token and its DecodeTask, or a decode instance) another dispatch, from the
        tokens made so far (each while attempts remain); otherwise the request fails. A
        lease the dead instance held is reclaimed by its memory nodes when it expires.
        Either way the scheduler hears of the loss first (the owner waits for it to take
        it), so that a placement or dispatch made again does not go to the dead instance."""
        lost_prefill = instance == self.prefill_instance and self.prefill_open
        lost_decode = instance == self.decode_instance and self.decode_open
        told: list[Action] = [InstanceLost(instance)] if lost_prefill or lost_decode else []
        if lost_prefill:
            self.prefill_open = False
        if lost_decode:
            self.decode_open = False
        if (lost_prefill and self.lease_holder is Holder.PREFILL) or (
            lost_decode and self.lease_holder is Holder.DECODE
        ):
            self.lease_holder = Holder.NOBODY
        # Tokens already went out: a decode instance goes on from them, whichever side died.
        continues = (lost_decode and self.stage in (Stage.DISPATCHED, Stage.DECODING)) or (
            lost_prefill and self.stage is Stage.KV_SAVED
        )
        if continues and self.decode_attempts < self.max_decode_attempts:
            self.decode_instance = None
            self._enter(Stage.LEASED)
            return [*told, DispatchAgain(self.decode_attempts + 1)]
        retry = (
            lost_prefill
            and self.stage in (Stage.QUEUED, Stage.PREFILLING)
            and self.tokens_sent == 0
            and self.attempts < self.max_attempts
        )
        if not retry:
            return told + self.fail(error)
        self.prefill_instance = None
        self._enter(Stage.PLACING)
        return [*told, PlaceAgain(self.attempts + 1)]

    def close(self) -> list[Action]:
        """The owner lets go (the stream to the client ended, however): a request still
        under way is cancelled, and whatever it still holds is given back."""
        if self.stage not in TERMINAL:
            return self._end(Stage.FAILED, FinishReason.ABORT)
        if self.prefill_open and self.prefill_instance is not None:  # its lease still to come
            self.prefill_open = False
            return [CancelPrefill(self.prefill_instance)]
        return []

    @property
    def finished(self) -> bool:
        return self.stage in TERMINAL

    # --- plumbing -----------------------------------------------------------------------------
    def _end(self, stage: Stage, reason: FinishReason) -> list[Action]:
        """Into a terminal stage. A finished request reads its prefill stream to the end
        (the lease comes with its last message); a failed one cancels every open stream."""
        self.finish_reason = reason
        actions: list[Action] = []
        if self.decode_open and self.decode_instance is not None:
            actions.append(CancelDecode(self.decode_instance))
            self.decode_open = False
            # A cancelled call may never have started, and so never release its lease; a
            # lease released twice is released once.
            if self.lease_holder is Holder.DECODE:
                self.lease_holder = Holder.OWNER
        if self.prefill_open and self.prefill_instance is not None and stage is Stage.FAILED:
            actions.append(CancelPrefill(self.prefill_instance))
            self.prefill_open = False
        if self.lease_holder is Holder.OWNER:
            actions.extend(self._release(self.lease_id))
        self._enter(stage)
        actions.append(Report(reason, self.tokens_sent, self.prefill_instance))
        return actions

    def _release(self, lease_id: str) -> list[Action]:
        """The owner gives back a lease it holds and no longer needs."""
        self.lease_holder = Holder.NOBODY
        return [ReleaseLease(lease_id)] if lease_id else []

    def _expect(self, *stages: Stage) -> None:
        if self.stage not in stages:
            wanted = " or ".join(stages)
            raise InvalidTransition(f"{self.request_id}: in stage {self.stage}, not {wanted}")

    def _enter(self, stage: Stage) -> None:
        self.history.append(self.stage)
        self.stage = stage
