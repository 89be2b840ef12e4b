"""Decode admission: whether a decode instance takes a dispatched request into its batch now.

Runs on each decode instance, after the decode dispatcher has placed a request there and its
KV has arrived, before the request joins the running decode batch. Capacity and sizes are in
KV tokens. Every policy admits on an idle instance (nothing running), so no request waits
forever for room that cannot appear.

- greedy (vLLM's rule): admit when the prompt's KV, plus one token to decode into, fits now.
- reserve_static: admit only when the prompt plus its whole predicted output fits now.
- reserve_dynamic: admit only when the request fits now and memory still suffices when the
  shortest remaining job in the batch finishes (see `ReserveDynamic`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RunningDecode:
    """A request in the decode batch."""

    request_id: str
    kv_tokens: int  # prompt + generated so far
    predicted_remaining: int  # predicted output tokens still to come (>= 0)

    def __post_init__(self) -> None:
        if self.kv_tokens < 0 or self.predicted_remaining < 0:
            raise ValueError(f"negative token count in {self!r}")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A request waiting to join the decode batch."""

    request_id: str
    prompt_tokens: int
    predicted_output: int

    def __post_init__(self) -> None:
        if self.prompt_tokens < 0 or self.predicted_output < 0:
            raise ValueError(f"negative token count in {self!r}")


class Admission(Protocol):
    name: str

    def admit(
        self, candidate: Candidate, running: Sequence[RunningDecode], capacity_tokens: int
    ) -> bool:
        """Whether `candidate` joins the batch now."""
        ...


def free_tokens(running: Sequence[RunningDecode], capacity_tokens: int) -> int:
    """KV tokens not held by the running batch."""
    return capacity_tokens - sum(job.kv_tokens for job in running)


def fits_now(candidate: Candidate, running: Sequence[RunningDecode], capacity_tokens: int) -> bool:
    """The prompt's KV plus one token to decode into fits in free memory now."""
    return candidate.prompt_tokens + 1 <= free_tokens(running, capacity_tokens)


class Greedy:
    """Admit whenever the prompt's KV fits now; the future is not considered."""

    name: str = "greedy"

    def admit(
        self, candidate: Candidate, running: Sequence[RunningDecode], capacity_tokens: int
    ) -> bool:
        return not running or fits_now(candidate, running, capacity_tokens)


class ReserveStatic:
    """Admit only when the prompt plus the whole predicted output fits in free memory now."""

    name: str = "reserve_static"

    def admit(
        self, candidate: Candidate, running: Sequence[RunningDecode], capacity_tokens: int
    ) -> bool:
        if not running:
            return True
        needed = candidate.prompt_tokens + candidate.predicted_output
        return needed <= free_tokens(running, capacity_tokens)


class ReserveDynamic:
    """Admit only when memory is still enough once the shortest running job finishes.

    The candidate must fit now (prompt + 1 <= free). Then, at s = the shortest
    `predicted_remaining` in the batch: jobs with `predicted_remaining <= s` have finished and
    freed their KV; every other job has grown by s tokens; the candidate holds
    prompt + min(s, predicted_output). Admit iff that total is within capacity.

    Example, capacity 100: A holds 20 (10 to go), B and C hold 30 each (40 to go); free is 20.
    At s = 10, A is gone and B and C hold 40 each, 80 in all. A candidate with a 15-token
    prompt fits now (16 <= 20) but would hold 15 + 10 = 25 at s: 105 > 100, refused. One with
    a 5-token prompt holds 15 at s: 95 <= 100, admitted.
    """

    name: str = "reserve_dynamic"

    def admit(
        self, candidate: Candidate, running: Sequence[RunningDecode], capacity_tokens: int
    ) -> bool:
        if not running:
            return True
        if not fits_now(candidate, running, capacity_tokens):
            return False
        return _held_at_shortest_finish(candidate, running) <= capacity_tokens


def _held_at_shortest_finish(candidate: Candidate, running: Sequence[RunningDecode]) -> int:
    """KV tokens held when the shortest running job finishes, counting the candidate."""
    s = min(job.predicted_remaining for job in running)
    survivors = sum(job.kv_tokens + s for job in running if job.predicted_remaining > s)
    return survivors + candidate.prompt_tokens + min(s, candidate.predicted_output)


ADMISSIONS: dict[str, Callable[[], Admission]] = {
    "greedy": Greedy,
    "reserve_static": ReserveStatic,
    "reserve_dynamic": ReserveDynamic,
}


def make_admission(name: str) -> Admission:
    """The admission policy called `name`."""
    try:
        factory = ADMISSIONS[name]
    except KeyError:
        valid = ", ".join(sorted(ADMISSIONS))
        raise ValueError(f"unknown decode admission {name!r}; valid: {valid}") from None
    return factory()
