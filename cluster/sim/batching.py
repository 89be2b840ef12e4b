"""Continuous batching inside one simulated engine, vLLM-style.

On the live path this is the vLLM engine inside a decode instance (and, for the colocated
baseline, inside a plain vLLM server). Sequences wait in the engine's queue, join the batch
first come first served while there is room (`max_num_seqs`, and KV for all they hold),
and each step makes one token for every decoding sequence. Prompt tokens still to compute
(a colocated request's prompt, or the context of a preempted sequence that must be
recomputed) share a step with the decodes under a token budget (chunked prefill) or, with
chunking off, run in prefill-only steps of whole prompts ahead of the decodes. When the
batch's KV would outgrow the cache, the newest sequence is preempted: its KV is dropped and
it goes back to the front of the queue, to be recomputed.

A decoding sequence is not touched at every step: its tokens are counted from the step at
which it joined, and a heap says at which step it ends, so a step costs O(1) plus the
sequences that end or prefill in it.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

from cluster.sim.cost_model import CostModel
from cluster.sim.workload import SimRequest


@dataclass(slots=True, eq=False)
class Sequence:
    """One request inside an engine. `kv_tokens` and `generated` are as of `since_step`
    (the engine's decode-step count when they were last brought up to date)."""

    request: SimRequest
    order: int
    predicted_output: int
    to_compute: int  # tokens whose KV must be computed before its next token
    kv_tokens: int  # prompt + generated tokens whose KV the engine holds
    generated: int  # output tokens made so far, the prefill's first token included
    since_step: int = 0
    ends_at_step: int = -1  # the decode step that makes its last token; -1 when not decoding


@dataclass(slots=True)
class BatchEngine:
    cost: CostModel
    chunked: bool
    token_budget: int
    capacity_tokens: int
    max_num_seqs: int
    decode_steps: int = 0
    used_tokens: int = 0  # KV held or reserved by the sequences in the batch
    decode_context: int = 0  # KV tokens of the decoding sequences
    waiting: deque[Sequence] = field(default_factory=deque)
    prefilling: list[Sequence] = field(default_factory=list)
    decoding: dict[int, Sequence] = field(default_factory=dict)  # by order of joining
    _ends: list[tuple[int, int, Sequence]] = field(default_factory=list)
    _chunks: list[tuple[Sequence, int]] = field(default_factory=list)
    _decodes_in_step: bool = False

    def add(self, sequence: Sequence) -> None:
        self.waiting.append(sequence)

    @property
    def batch_size(self) -> int:
        return len(self.prefilling) + len(self.decoding)

    def idle(self) -> bool:
        return not (self.waiting or self.prefilling or self.decoding)

    def generated(self, sequence: Sequence) -> int:
        """Output tokens made so far, counting the decode steps since it joined."""
        if sequence.ends_at_step < 0:
            return sequence.generated
        return sequence.generated + self.decode_steps - sequence.since_step

    def kv_tokens(self, sequence: Sequence) -> int:
        if sequence.ends_at_step < 0:
            return sequence.kv_tokens
        return sequence.kv_tokens + self.decode_steps - sequence.since_step

    def plan_step(self) -> float | None:
        """Form the next step's batch; its duration, or None when there is nothing to run."""
        self._preempt_to_fit()
        self._chunks = []
        if not self.chunked and self._prefill_only_step():
            self._decodes_in_step = False
            tokens = sum(take for _, take in self._chunks)
            return self.cost.prefill_pass_s(tokens)
        if self.waiting:
            self._admit(prompt_budget=None)
        prompt_tokens = self._plan_chunks(self.token_budget - len(self.decoding))
        self._decodes_in_step = bool(self.decoding)
        if not (self._chunks or self._decodes_in_step):
            return None
        return self.cost.mixed_step_s(prompt_tokens, len(self.decoding), self.decode_context)

    def _plan_chunks(self, budget: int) -> int:
        """Prompt chunks of the prefilling sequences, in order, within `budget` tokens;
        the tokens they take."""
        for sequence in self.prefilling:
            if budget <= 0:
                break
            take = min(sequence.to_compute, budget)
            self._chunks.append((sequence, take))
            budget -= take
        return sum(take for _, take in self._chunks) if self._chunks else 0

    def complete_step(self) -> tuple[list[Sequence], list[Sequence]]:
        """Apply the planned step: (sequences that made their first token, those that ended)."""
        first: list[Sequence] = []
        ended: list[Sequence] = []
        if self._decodes_in_step:
            self.decode_steps += 1
            self.used_tokens += len(self.decoding)
            self.decode_context += len(self.decoding)
            ends = self._ends
            while ends and ends[0][0] <= self.decode_steps:
                step, _, sequence = heapq.heappop(ends)
                if sequence.ends_at_step == step:
                    self._leave_decoding(sequence)
                    self.used_tokens -= sequence.kv_tokens
                    ended.append(sequence)
        for sequence, take in self._chunks:
            sequence.to_compute -= take
            sequence.kv_tokens += take
            if sequence.to_compute:
                continue
            self.prefilling.remove(sequence)
            sequence.generated += 1
            sequence.kv_tokens += 1
            self.used_tokens += 1
            if sequence.generated == 1:
                first.append(sequence)
            if sequence.generated >= sequence.request.output_tokens:
                self.used_tokens -= sequence.kv_tokens
                ended.append(sequence)
            else:
                self._join_decoding(sequence)
        self._chunks = []
        return first, ended

    def _prefill_only_step(self) -> bool:
        """Without chunking: admit waiting prompts whole, up to the token budget, and run
        them alone; False when none can be admitted."""
        if not (self.waiting and self.waiting[0].to_compute):
            return False
        self._admit(prompt_budget=self.token_budget)
        self._chunks = [(sequence, sequence.to_compute) for sequence in self.prefilling]
        return bool(self._chunks)

    def _admit(self, prompt_budget: int | None) -> None:
        """Waiting sequences join the batch in order while it has room for all they hold;
        with a `prompt_budget`, only prompts, whole, within that many tokens (the first
        always, so that no prompt waits forever)."""
        waiting = self.waiting
        while waiting and self.batch_size < self.max_num_seqs:
            sequence = waiting[0]
            held = sequence.kv_tokens + sequence.to_compute
            if self.batch_size and self.used_tokens + held + 1 > self.capacity_tokens:
                return
            if prompt_budget is not None:
                if not sequence.to_compute:
                    return
                if self.prefilling and sequence.to_compute > prompt_budget:
                    return
                prompt_budget -= sequence.to_compute
            waiting.popleft()
            self.used_tokens += held
            if sequence.to_compute:
                self.prefilling.append(sequence)
            else:
                self._join_decoding(sequence)

    def _preempt_to_fit(self) -> None:
        """Preempt the newest decoding sequences until every one has room for its next token."""
        while self.decoding and self.used_tokens + self.batch_size > self.capacity_tokens:
            if self.batch_size == 1:
                return
            _, sequence = self.decoding.popitem()
            self._leave_decoding(sequence, popped=True)
            self.used_tokens -= sequence.kv_tokens
            sequence.to_compute, sequence.kv_tokens = sequence.kv_tokens, 0
            self.waiting.appendleft(sequence)

    def _join_decoding(self, sequence: Sequence) -> None:
        sequence.since_step = self.decode_steps
        sequence.ends_at_step = (
            self.decode_steps + sequence.request.output_tokens - sequence.generated
        )
        self.decoding[sequence.order] = sequence
        self.decode_context += sequence.kv_tokens
        heapq.heappush(self._ends, (sequence.ends_at_step, sequence.order, sequence))

    def _leave_decoding(self, sequence: Sequence, popped: bool = False) -> None:
        """Bring its counts up to date and take it out of the decoding set."""
        steps = self.decode_steps - sequence.since_step
        sequence.generated += steps
        sequence.kv_tokens += steps
        sequence.since_step = self.decode_steps
        sequence.ends_at_step = -1
        if not popped:
            del self.decoding[sequence.order]
        self.decode_context -= sequence.kv_tokens
