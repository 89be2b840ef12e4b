"""Simulated prefill and decode instances: the engines behind the two roles.

`PrefillInstance` stands for actors/instances/prefill_instance.py: requests wait in the
live system's own `PrefillQueue` (FCFS, SJF or LJF in PrefillSchedBatch batches), are
released to the engine as `PrefillQueue.release` says (while it holds under two chunks),
and the engine runs one pass of at most ChunkSize prompt tokens at a time, packed in
release order (long prompts split, short ones share a pass). A prompt's first token leaves
at the end of the pass that computes its last token.

`DecodeInstance` stands for actors/instances/decode_instance.py: a dispatched request waits
for the live system's admission policy (`cluster.decode_admission`), then reads its KV from
the memory node over this instance's link (one read at a time, each priced by the cost
model), then joins the engine's continuous batch (`BatchEngine`). Its `load()` is the load
report the decode dispatcher chooses by.

`Meter` counts what each instance costs: seconds of engine work, and seconds with at least
one request held (the instance-seconds a benchmark charges).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from cluster.decode_admission import Admission, Candidate, RunningDecode
from cluster.decode_load import DecodeProgress, decode_load
from cluster.placement import InstanceLoad
from cluster.prefill_queue import PrefillQueue
from cluster.sim.batching import BatchEngine, Sequence
from cluster.sim.cost_model import CostModel
from cluster.sim.events import EventQueue
from cluster.sim.workload import SimRequest

RequestEvent = Callable[[SimRequest, str], None]


@dataclass(slots=True)
class Meter:
    compute_s: float = 0.0
    held_s: float = 0.0
    held: int = 0
    _held_since: float = 0.0

    def hold(self, now: float) -> None:
        if self.held == 0:
            self._held_since = now
        self.held += 1

    def let_go(self, now: float) -> None:
        self.held -= 1
        if self.held == 0:
            self.held_s += now - self._held_since


StepDone = Callable[[list[Sequence], list[Sequence]], None]
# (now, seconds of a pass on all of the node's cores) -> seconds it takes on the cores the
# engine has when it starts (cluster/sim/core_pair.py).
Pace = Callable[[float, float], float]


def all_cores(now: float, seconds: float) -> float:
    """The pace of an engine with its node's cores to itself."""
    return seconds


class EngineLoop:
    """An engine's steps, one after another in simulated time, each charged to its
    instance's meter: `kick` starts one when the engine is idle and has work; after each,
    `on_step(first, ended)` hears which sequences made their first token and which ended,
    and the next step starts."""

    __slots__ = ("_stepping", "engine", "events", "meter", "on_step", "pace")

    def __init__(
        self,
        engine: BatchEngine,
        events: EventQueue,
        meter: Meter,
        on_step: StepDone,
        pace: Pace = all_cores,
    ) -> None:
        self.engine = engine
        self.events = events
        self.meter = meter
        self.on_step = on_step
        self.pace = pace
        self._stepping = False

    def kick(self) -> None:
        if self._stepping:
            return
        seconds = self.engine.plan_step()
        if seconds is None:
            return
        seconds = self.pace(self.events.now, seconds)
        self.meter.compute_s += seconds
        self._stepping = True
        self.events.after(seconds, self._step_done)

    def _step_done(self, _: object = None) -> None:
        self._stepping = False
        first, ended = self.engine.complete_step()
        self.on_step(first, ended)
        self.kick()


@dataclass(slots=True)
class _Released:
    request: SimRequest
    tokens_left: int


class PrefillInstance:
    role = "prefill"

    def __init__(
        self,
        instance_id: str,
        cost: CostModel,
        queue: PrefillQueue,
        events: EventQueue,
        meter: Meter,
        on_first_token: RequestEvent,
        pace: Pace = all_cores,
    ) -> None:
        self.instance_id = instance_id
        self.cost = cost
        self.pace = pace
        self.chunk_tokens = cost.chunk_tokens
        self.queue = queue
        self.events = events
        self.meter = meter
        self.on_first_token = on_first_token
        self._queued: dict[str, SimRequest] = {}
        self._released: deque[_Released] = deque()
        self._released_tokens = 0
        self._pass: list[tuple[_Released, int]] = []
        self._stepping = False

    @property
    def queued(self) -> int:
        return len(self.queue)

    @property
    def running(self) -> int:
        return len(self._released)

    def load(self) -> InstanceLoad:
        return InstanceLoad(self.instance_id, queued=self.queued, running=self.running)

    def submit(self, request: SimRequest) -> None:
        self.meter.hold(self.events.now)
        self._queued[request.request_id] = request
        self.queue.push(request.request_id, request.prompt_tokens)
        self._release_queued()
        self._step()

    def _release_queued(self) -> None:
        for item in self.queue.release(self._released_tokens, self.chunk_tokens):
            request = self._queued.pop(item.request_id)
            self._released.append(_Released(request, request.prompt_tokens))
            self._released_tokens += request.prompt_tokens

    def _step(self) -> None:
        if self._stepping or not self._released:
            return
        budget = self.chunk_tokens
        for released in self._released:
            take = min(released.tokens_left, budget)
            self._pass.append((released, take))
            budget -= take
            if budget == 0:
                break
        seconds = self.pace(self.events.now, self.cost.prefill_pass_s(self.chunk_tokens - budget))
        self.meter.compute_s += seconds
        self._stepping = True
        self.events.after(seconds, self._pass_done)

    def _pass_done(self, _: object = None) -> None:
        self._stepping = False
        done: list[SimRequest] = []
        for released, take in self._pass:
            released.tokens_left -= take
            if released.tokens_left == 0:
                done.append(released.request)
        self._pass = []
        while self._released and self._released[0].tokens_left == 0:
            finished = self._released.popleft()
            self._released_tokens -= finished.request.prompt_tokens
        self._release_queued()
        self._step()
        now = self.events.now
        for request in done:
            request.first_token_s = now
            self.meter.let_go(now)
            self.on_first_token(request, self.instance_id)


class DecodeInstance:
    role = "decode"

    def __init__(
        self,
        instance_id: str,
        cost: CostModel,
        admission: Admission,
        events: EventQueue,
        meter: Meter,
        on_finished: RequestEvent,
        pace: Pace = all_cores,
    ) -> None:
        self.instance_id = instance_id
        self.cost = cost
        self.admission = admission
        self.capacity_tokens = cost.kv_capacity_tokens
        self.events = events
        self.meter = meter
        self.on_finished = on_finished
        self.engine = BatchEngine(
            cost,
            chunked=True,
            token_budget=cost.chunk_tokens,
            capacity_tokens=cost.kv_capacity_tokens,
            max_num_seqs=cost.max_num_seqs,
        )
        self.awaiting_admission: deque[Sequence] = deque()
        self.admitted: dict[int, Sequence] = {}
        self.progress: dict[int, DecodeProgress] = {}  # of each admitted one, by order
        self._waiting_work = 0  # predicted decode tokens of those awaiting admission
        self.heavy: dict[int, bool] = {}  # of each one not yet admitted, by order
        self._link_free_s = 0.0
        self.loop = EngineLoop(self.engine, events, meter, self._step_done, pace)

    @property
    def outstanding(self) -> int:
        return len(self.awaiting_admission) + len(self.admitted)

    def submit(self, request: SimRequest, predicted_output: int, heavy: bool) -> None:
        """A dispatched request: its prompt and first token are made, its KV is saved."""
        self.meter.hold(self.events.now)
        sequence = Sequence(
            request,
            order=request.index,
            predicted_output=predicted_output,
            to_compute=0,
            kv_tokens=request.prompt_tokens + 1,
            generated=1,
        )
        self.heavy[sequence.order] = heavy
        if not self._admit(sequence, self._running_views()):
            self.awaiting_admission.append(sequence)
            self._waiting_work += _work_left(sequence)

    def load(self) -> InstanceLoad:
        """What the live instance reports: requests waiting for admission, admitted ones,
        free KV, heavy and light decodes, predicted decode tokens still to make."""
        load = InstanceLoad(
            self.instance_id, queued=len(self.awaiting_admission), running=len(self.admitted)
        )
        return decode_load(load, self._running(), self._waiting_work, self.capacity_tokens)

    def _running(self) -> list[DecodeProgress]:
        """The admitted requests as the live decode role tracks them, brought up to date:
        tokens each decode made so far (the first token came from the prefill)."""
        generated, progress = self.engine.generated, self.progress
        for order, sequence in self.admitted.items():
            progress[order].generated = generated(sequence) - 1
        return list(progress.values())

    def _running_views(self) -> list[RunningDecode]:
        """The admitted requests as the admission policy sees them (decode tokens only)."""
        admitted, running = self.admitted, self._running()
        return [
            progress.view(admitted[order].request.request_id)
            for order, progress in zip(self.progress, running, strict=True)
        ]

    def _admit(self, sequence: Sequence, running: list[RunningDecode]) -> bool:
        request = sequence.request
        candidate = Candidate(request.request_id, request.prompt_tokens, sequence.predicted_output)
        if not self.admission.admit(candidate, running, self.capacity_tokens):
            return False
        self.admitted[sequence.order] = sequence
        self.progress[sequence.order] = DecodeProgress(
            request.prompt_tokens, sequence.predicted_output, self.heavy.pop(sequence.order)
        )
        running.append(
            RunningDecode(candidate.request_id, request.prompt_tokens, sequence.predicted_output)
        )
        start = max(self.events.now, self._link_free_s)
        self._link_free_s = start + self.cost.kv_transfer_s(request.prompt_tokens)
        self.events.at(self._link_free_s, self._kv_loaded, sequence)
        return True

    def _kv_loaded(self, sequence: Sequence) -> None:
        self.engine.add(sequence)
        self.loop.kick()

    def _step_done(self, _: list[Sequence], ended: list[Sequence]) -> None:
        now = self.events.now
        for sequence in ended:
            del self.admitted[sequence.order]
            del self.progress[sequence.order]
        if ended and self.awaiting_admission:
            self._admit_waiting()
        for sequence in ended:
            sequence.request.finished_s = now
            self.meter.let_go(now)
            self.on_finished(sequence.request, self.instance_id)

    def _admit_waiting(self) -> None:
        """After a request ends, every waiting one checks again, in arrival order."""
        running = self._running_views()
        still = deque(s for s in self.awaiting_admission if not self._admit(s, running))
        self.awaiting_admission = still
        self._waiting_work = sum(_work_left(s) for s in still)


def _work_left(waiting: Sequence) -> int:
    """Decode tokens still predicted for a request that awaits admission (none made yet)."""
    return DecodeProgress(waiting.request.prompt_tokens, waiting.predicted_output, False).work_left
