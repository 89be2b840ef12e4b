"""A vLLM plugin: two CPU engines share their cores, the prefill engine first.

On a machine with few cores, the default deployment gives the prefill engine and the decode
engine a core each, and each engine also runs on its partner's core. The prefill engine
*leads*: it runs every step on both cores, at normal priority, and a decode must never delay
it (that interference is what disaggregation removes). The decode engine *yields*: while
a prefill step runs on the decode's own core, the decode's threads there run at idle
priority (SCHED_IDLE), so the prefill's threads take that core the moment they have work
and hand it back the moment they wait; otherwise (the prefill engine idle, or keeping to its
own core) they run at normal priority, so that the relays of the serving path (at nice 10,
actors/cpu_priority.py) do not hold up the decode's steps (`HomeThreads`; going back to
normal priority needs CAP_SYS_NICE, and without it they stay at idle priority). The
decode runs on the prefill's core only while the prefill engine is idle. So that a backlog
of prompts cannot starve the decodes, the prefill's steps on the decode's core while the
decode has work add up to at most a share of any second (`LeadBudget`, in
cluster/core_sharing.py, which the simulator uses too; its other steps run on its own
core); a step that starts while the decode is idle costs the share nothing. A
decode step of a small model is a pass over all its weights, so one engine on both cores
makes far more tokens per second than one engine per core (on 2 cores, small model, 32
sequences: about 1.5x).

Threads are bound one per core, home cores first, so that the threads an engine stops
using are the ones on borrowed cores. A yielding engine counts the borrowed cores whose own
engine is idle before each forward pass, and again after each attention layer: a decode step
of the small model lasts 50-100 ms, so a prefill that wakes mid-step shares its core with
the decode for one layer at most, and a core it leaves mid-step is taken back at the next
layer. The yielding engine's threads wait passively between parallel regions
(OMP_WAIT_POLICY=PASSIVE): a spinning thread would hold its partner's core through its own
engine's Python work between kernels. The leading engine's threads spin briefly before they
sleep (`LEAD_SPIN_COUNT`): a thread that sleeps between two kernels lets the relays take its
core, and every kernel then waits for its slowest thread. Measured live (small model,
prompts only, 128-token steps on both cores): 2.70 ms per token against 3.61 asleep at once.

The state is a board of two slots per CPU core, in a small shared-memory file that every
sharing engine on the node maps (`board_path`), each holding a CLOCK_MONOTONIC deadline (the
same in every process). The first says until when the core's home engine counts as busy;
only the home engine writes it: at the start of a forward pass, `now + STEP_BOUND_S` (a
crashed engine frees its cores after that); at the end, `now + LINGER_S`, so that an engine
between two steps of the same burst keeps its cores. The second says until when a leading
engine runs on the core as a borrowed one; only that engine writes it, in the same way,
without the linger.

The engine adapter (actors/engine/adapter.py) sets the variables below before it starts an
engine; this plugin, loaded in every vLLM process through the `vllm.general_plugins` entry
point, gives the engine's worker its OpenMP placement (`omp_environment`) and wraps the
worker's forward pass. Without them (plain vLLM in the benchmarks, GPU engines) it does
nothing. An engine keeps its side (leading or yielding) if its instance flips role.
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import os
import struct
import tempfile
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from pathlib import Path

from actors import cpu_priority
from cluster.core_sharing import LINGER_S, LeadBudget

BOARD_ENV = "TETRISERVE_CORE_BOARD"
HOME_ENV = "TETRISERVE_HOME_CORES"
BORROWED_ENV = "TETRISERVE_BORROWED_CORES"
LEADS_ENV = "TETRISERVE_LEADS_CORES"  # "1": this engine leads (the prefill)
LEAD_SHARE_ENV = "TETRISERVE_LEAD_SHARE"  # ... on its partner's cores at most this share
# ... and at most this long after one starts, should it never end (a crashed engine).
STEP_BOUND_S = 10.0
# Rounds a leading engine's idle OpenMP thread spins before it sleeps (libgomp's default,
# 300,000, holds a core through the engine's Python work between steps).
LEAD_SPIN_COUNT = 10_000
# vLLM's CPU linear layers keep this many oneDNN kernels each (create_onednn_mm(..., 32)).
ONEDNN_KERNELS_PER_LAYER = 32
ENVIRONMENT = (BOARD_ENV, HOME_ENV, BORROWED_ENV, LEADS_ENV, LEAD_SHARE_ENV)
_SLOT = struct.Struct("d")
SHARED_MEMORY = Path("/dev/shm")
_PATCHED_FLAG = "_tetriserve_core_share"
_step_clock = time.perf_counter  # what a step's seconds are read from (WidthChoice)


def board_path() -> Path:
    """The node's board. The cores are the node's, so every engine on it that shares cores
    marks the same board, whichever deployment it belongs to; one file per user, in shared
    memory where the OS has it."""
    folder = SHARED_MEMORY if SHARED_MEMORY.is_dir() else Path(tempfile.gettempdir())
    return folder / f"tetriserve-cores-{os.getuid()}"


def parse_cores(cores: str) -> list[int]:
    """ "1" or "0,2" or "0-3" → core ids, in the order given."""
    ids: list[int] = []
    for part in filter(None, cores.split(",")):
        first, _, last = part.partition("-")
        ids.extend(range(int(first), int(last or first) + 1))
    return ids


def omp_environment(home: list[int], borrowed: list[int], leads: bool) -> dict[str, str]:
    """OpenMP's variables for an engine: one thread per core, bound to it, home cores first
    (thread i runs on place i, so a step with fewer threads leaves the borrowed cores). A
    yielding engine's threads sleep as soon as they wait; a leading engine's spin for
    `LEAD_SPIN_COUNT` rounds first, so that they keep their cores between two kernels."""
    places = ",".join(f"{{{core}}}" for core in [*home, *borrowed])
    spin = {"GOMP_SPINCOUNT": str(LEAD_SPIN_COUNT)}
    waiting = spin if leads else {"OMP_WAIT_POLICY": "PASSIVE"}
    return {
        "OMP_NUM_THREADS": str(len(home) + len(borrowed)),
        "OMP_PLACES": places,
        "OMP_PROC_BIND": "close",
        **waiting,
    }


class CoreBoard:
    """The node's slots, two per core: until when its home engine counts as busy (written
    only by that engine), and until when a leading engine runs on it as a borrowed core
    (written only by that engine)."""

    def __init__(self, path: Path, cores: int | None = None) -> None:
        cores = cores or os.cpu_count() or 1
        size = 2 * cores * _SLOT.size
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.cores = cores

    def _offset(self, core: int, lent: bool) -> int:
        return ((core % self.cores) + (self.cores if lent else 0)) * _SLOT.size

    def busy_until(self, core: int, deadline: float) -> None:
        _SLOT.pack_into(self._map, self._offset(core, lent=False), deadline)

    def idle(self, core: int, now: float) -> bool:
        (deadline,) = _SLOT.unpack_from(self._map, self._offset(core, lent=False))
        return deadline <= now

    def lent_until(self, core: int, deadline: float) -> None:
        _SLOT.pack_into(self._map, self._offset(core, lent=True), deadline)

    def lent(self, core: int, now: float) -> bool:
        """Whether a leading engine is running on `core`, borrowed from its home engine."""
        (deadline,) = _SLOT.unpack_from(self._map, self._offset(core, lent=True))
        return deadline > now


class WideShapes:
    """The GEMM batch sizes this worker has run at full width.

    vLLM's CPU GEMMs (oneDNN) build one kernel per batch size and keep the last
    ONEDNN_KERNELS_PER_LAYER of them; a kernel's thread count is fixed when it is built,
    and one built narrow stays narrow. So a step with a batch size the worker has not run
    recently runs at full width, borrowed cores or not: its kernels are then built wide,
    and later narrow steps simply use fewer of their threads. This mirrors the kernel
    cache's least-recently-used order over every size a step touches (its tokens and its
    sampled requests); a layer's own cache sees a subset of them, so whatever is still
    here is still there."""

    def __init__(self, capacity: int = 0) -> None:
        self.capacity = capacity or ONEDNN_KERNELS_PER_LAYER
        self._recent: OrderedDict[int, None] = OrderedDict()

    def first_seen(self, sizes: tuple[int, ...]) -> bool:
        """True when a step of these sizes must run wide; records it as run either way."""
        unseen = any(size not in self._recent for size in sizes)
        for size in sizes:
            self._recent[size] = None
            self._recent.move_to_end(size)
        while len(self._recent) > self.capacity:
            self._recent.popitem(last=False)
        return unseen


@dataclass(slots=True)
class _Timing:
    """One step size's clean steps at one width: how many, and their moving average."""

    steps: int = 0
    seconds: float = 0.0


class WidthChoice:
    """Whether borrowing pays, per step size: an engine runs on its partner's cores (a
    yielding engine: while they are idle; a leading one: within its share) only for step
    sizes where wide steps have been faster than narrow ones.

    A second core does not always make a step faster: the tiny model's one-token decode
    step took 5.0 ms on two cores against 3.4 ms on one (its kernels are too short to repay
    waking a second thread), while the small model's 32-sequence step is far faster wide.
    So each step size (its scheduled tokens, by powers of two) keeps a moving average of
    the seconds its clean steps took at each width: steps that ran at one width throughout,
    and could have run wide (a yielding engine's partner idle at their start and end, a
    leading engine within its share), so that neither a narrowing mid-step nor a busy
    partner colours the figure. A size runs wide until it has `MIN_STEPS` wide
    steps, then narrow until it has as many narrow ones; after that it runs at the faster
    width, and every `RECHECK_EVERY` steps once at the other, so that the figures follow
    the engine as its batches change."""

    MIN_STEPS = 4
    RECHECK_EVERY = 64
    SMOOTHING = 0.2  # weight of the newest step in the moving average

    def __init__(self) -> None:
        # (step size, wide) → its clean steps
        self._timings: defaultdict[tuple[int, bool], _Timing] = defaultdict(_Timing)

    @staticmethod
    def size(tokens: int) -> int:
        return max(tokens, 1).bit_length()

    def wide(self, tokens: int) -> bool:
        """Whether a step of `tokens` that may borrow its partner's cores should."""
        size = self.size(tokens)
        wide, narrow = self._timings[size, True], self._timings[size, False]
        if wide.steps < self.MIN_STEPS:
            return True
        if narrow.steps < self.MIN_STEPS:
            return False
        faster_is_wide = wide.seconds <= narrow.seconds
        recheck = (wide.steps + narrow.steps) % self.RECHECK_EVERY == 0
        return faster_is_wide != recheck

    def ran(self, tokens: int, wide: bool, seconds: float) -> None:
        """A clean step of `tokens` took `seconds` at one width throughout."""
        timing = self._timings[self.size(tokens), wide]
        if timing.steps:
            seconds = timing.seconds + self.SMOOTHING * (seconds - timing.seconds)
        timing.seconds = seconds
        timing.steps += 1


class CoreShare:
    """One engine's side of the board: marks its home cores, counts the borrowed ones (a
    leading engine takes them all)."""

    def __init__(
        self,
        board: CoreBoard,
        home: list[int],
        borrowed: list[int],
        clock=time.monotonic,
        leads: bool = False,
        lead_share: float = 1.0,
    ) -> None:
        self.board = board
        self.home = home
        self.borrowed = borrowed
        self.leads = leads
        self._clock = clock
        self._lead_budget = LeadBudget(lead_share)
        self._wide_since: float | None = None
        self._lending = False  # this leading step runs on the borrowed cores

    @property
    def width(self) -> int:
        """Threads with every borrowed core."""
        return len(self.home) + len(self.borrowed)

    def step_starts(self) -> int:
        """Marks the home cores busy; returns how many threads this step runs: every core for
        a leading engine within its share; else one per home core, plus one per borrowed
        core in order up to the first whose engine is busy."""
        now = self._clock()
        for core in self.home:
            self.board.busy_until(core, now + STEP_BOUND_S)
        if self.leads:
            if self.threads_allowed(now) == self.width:  # its partner idle: free of charge
                self._wide_since = None
                return self.width
            self._wide_since = now if self._lead_budget.allows(now) else None
            return self.width if self._wide_since is not None else len(self.home)
        return self.threads_allowed(now)

    def stays_home(self) -> None:
        """This step keeps to the home cores after all: a leading engine's share is not
        charged for it."""
        self._wide_since = None

    def runs_wide(self) -> None:
        """This leading step runs on the borrowed cores: marks them lent until it ends."""
        self._lending = True
        deadline = self._clock() + STEP_BOUND_S
        for core in self.borrowed:
            self.board.lent_until(core, deadline)

    def home_lent(self) -> bool:
        """Whether a leading engine is running on one of this engine's home cores now."""
        now = self._clock()
        return any(self.board.lent(core, now) for core in self.home)

    def threads_allowed(self, now: float | None = None) -> int:
        """A yielding engine's threads now: one per home core, plus one per borrowed core in
        order up to the first whose engine is busy. Asked at each step's start and again
        after each attention layer of its forward pass."""
        now = self._clock() if now is None else now
        threads = len(self.home)
        for core in self.borrowed:
            if not self.board.idle(core, now):
                break
            threads += 1
        return threads

    def step_ends(self) -> None:
        now = self._clock()
        if self._wide_since is not None:
            self._lead_budget.spent(self._wide_since, now)
            self._wide_since = None
        if self._lending:
            self._lending = False
            for core in self.borrowed:
                self.board.lent_until(core, now)
        deadline = now + LINGER_S
        for core in self.home:
            self.board.busy_until(core, deadline)


def _cores_from_environment() -> tuple[list[int], list[int], bool]:
    """(home, borrowed, leads), as the engine adapter named them for this engine."""
    home = parse_cores(os.environ.get(HOME_ENV, ""))
    borrowed = parse_cores(os.environ.get(BORROWED_ENV, ""))
    return home, borrowed, os.environ.get(LEADS_ENV) == "1"


def from_environment() -> CoreShare | None:
    board = os.environ.get(BOARD_ENV)
    if not board:
        return None
    home, borrowed, leads = _cores_from_environment()
    share = float(os.environ.get(LEAD_SHARE_ENV) or 1.0)
    return CoreShare(CoreBoard(Path(board)), home, borrowed, leads=leads, lead_share=share)


def apply() -> None:
    """The `vllm.general_plugins` entry point; safe to call more than once. In the engine
    core it places the workers' threads as it starts them; in a worker it wraps the forward
    pass."""
    if not os.environ.get(BOARD_ENV):
        return
    try:
        from vllm.utils.ompmultiprocessing import OMPProcessManager
        from vllm.v1.worker.cpu_worker import CPUWorker
    except ImportError:  # a vLLM without the CPU worker has nothing to share
        return
    if not getattr(CPUWorker.execute_model, _PATCHED_FLAG, False):
        CPUWorker.execute_model = _counting_threads(CPUWorker.execute_model)
    if not getattr(OMPProcessManager.configure_omp_envs, _PATCHED_FLAG, False):
        OMPProcessManager.configure_omp_envs = _placing_threads(
            OMPProcessManager.configure_omp_envs
        )


def _placing_threads(original):
    """vLLM's OpenMP set-up for a worker it starts, with this engine's placement instead.
    Only the worker gets OpenMP's variables: a process started with them binds its first
    thread to the first place, and the engine core would then compete with its own worker
    for the home core."""

    @functools.wraps(original)
    @contextlib.contextmanager
    def configure_omp_envs(self, *args, **kwargs):
        home, borrowed, leads = _cores_from_environment()
        placement = omp_environment(home, borrowed, leads)
        saved = {name: os.environ.get(name) for name in placement}
        os.environ.update(placement)
        try:
            with original(self, *args, **kwargs):
                yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    setattr(configure_omp_envs, _PATCHED_FLAG, True)
    return configure_omp_envs


class HomeThreads:
    """A yielding engine's threads on its home cores: at idle priority while a leading
    engine runs on those cores, at normal priority otherwise. Asked at each step's start
    and after each attention layer, it changes their policy only when that changed. Where
    the OS refuses the way back to normal priority, they stay at idle priority."""

    def __init__(self, thread_ids: list[int]) -> None:
        self.thread_ids = thread_ids
        self.idle: bool | None = None
        self.may_return = True

    def follow(self, partner_on_home_cores: bool) -> None:
        if partner_on_home_cores == self.idle or not self.may_return:
            return
        if cpu_priority.set_idle(self.thread_ids, partner_on_home_cores):
            self.idle = partner_on_home_cores
        else:  # refused on the way back to normal priority: they stay idle, for good
            self.may_return = False
            self.idle = True


class _WorkerThreads:
    """The worker's OpenMP thread count, set only when it changes; the width its step began
    with (attention runs at it); while `held`, the whole step runs at that width (its GEMM
    kernels are being built wide)."""

    def __init__(self) -> None:
        # vLLM replaces torch.set_num_threads once it has bound its threads; the builtin stays.
        from torch._C import set_num_threads

        self._set_num_threads = set_num_threads
        self.count = 0
        self.step_width = 0
        self.cap = 0  # the most threads this step may use
        self.held = False
        self.changed = False  # the count changed since the step began

    def begin(self, width: int, cap: int, held: bool) -> None:
        self.step_width, self.cap, self.held = width, cap, held
        self.use(width)
        self.changed = False

    def use(self, threads: int) -> None:
        threads = min(threads, self.cap)
        if threads != self.count:
            self._set_num_threads(threads)
            self.count = threads
            self.changed = True


def _attention_layers(worker: object) -> list:
    """The model's attention layers (vLLM's `Attention` modules), or none where the worker
    has no such model."""
    model = getattr(getattr(worker, "model_runner", None), "model", None)
    if model is None:
        return []
    from vllm.model_executor.layers.attention.attention import Attention

    return [module for module in model.modules() if isinstance(module, Attention)]


def _counting_threads(original):
    """The worker's forward pass, run with as many threads as the board allows.

    A yielding engine asks again after each attention layer: a decode step lasts many times a
    prefill's wake-up, and a core its partner leaves mid-step would otherwise idle to the
    step's end, while a partner that wakes mid-step would share its core with this step's
    thread. Attention itself runs at the step's starting width, which its metadata (built
    once per step) was partitioned for; the GEMMs between run at the width of the moment.
    Either side borrows only for step sizes where borrowing has paid (`WidthChoice`)."""
    share = from_environment()
    wide = WideShapes()
    choice = WidthChoice()
    threads = _WorkerThreads()
    home_threads = HomeThreads([])

    def before_attention(module, args) -> None:
        threads.use(threads.step_width)

    def after_attention(module, args, output) -> None:
        allowed = share.threads_allowed()
        home_threads.follow(partner_on_home_cores=share.home_lent())
        if not threads.held:
            threads.use(allowed)

    @functools.wraps(original)
    def execute_model(self, scheduler_output, *args, **kwargs):
        if share is None or scheduler_output.total_num_scheduled_tokens == 0:
            return original(self, scheduler_output, *args, **kwargs)
        if not threads.count and not share.leads:  # the first forward pass
            # its OpenMP threads exist by now
            home_threads.thread_ids = cpu_priority.threads_on_cores(share.home)
            for attention in _attention_layers(self):
                attention.register_forward_pre_hook(before_attention)
                attention.register_forward_hook(after_attention)
        count = share.step_starts()
        tokens = scheduler_output.total_num_scheduled_tokens
        # yielding: the partner is idle; leading: the step is within its share
        may_widen = count == share.width
        if not share.leads:
            home_threads.follow(partner_on_home_cores=share.home_lent())
        held = wide.first_seen((tokens, len(scheduler_output.num_scheduled_tokens)))
        borrows = held or choice.wide(tokens)
        if not borrows:
            share.stays_home()
        threads.begin(
            width=share.width if held else count,
            cap=share.width if borrows else len(share.home),
            held=held,
        )
        if share.leads and threads.count > len(share.home):
            share.runs_wide()
        started = _step_clock()
        try:
            return original(self, scheduler_output, *args, **kwargs)
        finally:
            seconds = _step_clock() - started
            share.step_ends()
            clean = may_widen and not held and not threads.changed
            if clean and (share.leads or share.threads_allowed() == share.width):
                choice.ran(tokens, wide=threads.count > len(share.home), seconds=seconds)

    setattr(execute_model, _PATCHED_FLAG, True)
    return execute_model
