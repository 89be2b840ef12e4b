"""Core sharing between partner engines: the board's slots, the thread count each step runs
with (every core for the leading engine, and for either only where wide steps pay), the
OpenMP placement that makes fewer threads leave the borrowed cores, idle priority on the
yielding engine's own cores while its partner is busy, and the variables the engine adapter
hands to an engine's processes."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from actors import cpu_priority
from actors.engine import core_share
from actors.engine.adapter import engine_args
from actors.engine.core_share import (
    CoreBoard,
    CoreShare,
    HomeThreads,
    WideShapes,
    WidthChoice,
    omp_environment,
    parse_cores,
)
from cluster.config import EngineConfig
from tests.support import FakeClock


@pytest.fixture
def board(tmp_path: Path) -> CoreBoard:
    return CoreBoard(tmp_path / "board", cores=4)


def test_core_lists_keep_their_order() -> None:
    assert parse_cores("1") == [1]
    assert parse_cores("3,0-1") == [3, 0, 1]
    assert parse_cores("") == []


def test_threads_are_bound_one_per_core_home_first_and_a_yielding_engines_sleep_at_once() -> None:
    assert omp_environment([1], [0], leads=False) == {
        "OMP_NUM_THREADS": "2",
        "OMP_PLACES": "{1},{0}",
        "OMP_PROC_BIND": "close",
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    leading = omp_environment([0], [1], leads=True)
    assert leading["OMP_PLACES"] == "{0},{1}"
    assert leading["GOMP_SPINCOUNT"] == str(core_share.LEAD_SPIN_COUNT)
    assert "OMP_WAIT_POLICY" not in leading  # which would override the spin count


def test_a_leading_engine_runs_on_every_core_even_while_its_partner_is_busy(
    board: CoreBoard,
) -> None:
    clock = FakeClock(now=100.0)
    CoreShare(board, home=[1], borrowed=[0], clock=clock).step_starts()  # the decode
    prefill = CoreShare(board, home=[0], borrowed=[1], clock=clock, leads=True)
    assert prefill.step_starts() == 2
    assert not board.idle(0, now=clock.now)  # and the decode now keeps off its core
    assert CoreShare(board, home=[1], borrowed=[0], clock=clock).step_starts() == 1


def test_a_leading_engine_keeps_to_its_share_of_its_partners_core(board: CoreBoard) -> None:
    clock = FakeClock(now=100.0)
    board.busy_until(1, clock.now + 60)  # the decode is busy throughout
    prefill = CoreShare(board, home=[0], borrowed=[1], clock=clock, leads=True, lead_share=0.5)
    assert prefill.step_starts() == 2
    clock.now += 0.6  # a long step on both cores: more than half of the last second
    prefill.step_ends()
    assert prefill.step_starts() == 1  # so the next one keeps to its own core
    clock.now += 0.3
    prefill.step_ends()  # a narrow step costs the share nothing
    clock.now += 0.2  # 1.1 s after the wide step began: 0.5 s of it left in the window
    assert prefill.step_starts() == 1
    clock.now += 0.2
    prefill.step_ends()
    assert prefill.step_starts() == 2  # 0.3 s of it left: below the half again


def test_a_leading_engines_wide_step_marks_its_partners_core_lent_until_it_ends(
    board: CoreBoard,
) -> None:
    clock = FakeClock(now=100.0)
    decode = CoreShare(board, home=[1], borrowed=[0], clock=clock)
    prefill = CoreShare(board, home=[0], borrowed=[1], clock=clock, leads=True, lead_share=0.5)
    board.busy_until(1, clock.now + 60)  # the decode is busy throughout
    assert prefill.step_starts() == 2
    prefill.runs_wide()
    assert decode.home_lent()  # the decode's home threads now yield their core
    clock.now += 0.6
    prefill.step_ends()
    assert not decode.home_lent()
    assert prefill.step_starts() == 1  # beyond its share: a narrow step lends nothing
    assert not decode.home_lent()
    assert not board.idle(0, now=clock.now)  # though the prefill is busy on its own core


def test_a_leading_engines_steps_while_its_partner_is_idle_cost_its_share_nothing(
    board: CoreBoard,
) -> None:
    clock = FakeClock(now=100.0)
    prefill = CoreShare(board, home=[0], borrowed=[1], clock=clock, leads=True, lead_share=0.5)
    for _ in range(3):  # three wide seconds: the decode has nothing to run
        assert prefill.step_starts() == 2
        clock.now += 1.0
        prefill.step_ends()
    board.busy_until(1, clock.now + 60)  # the decode starts a step
    assert prefill.step_starts() == 2  # its share is whole
    clock.now += 0.6
    prefill.step_ends()
    assert prefill.step_starts() == 1  # and now spent


def test_a_share_of_one_never_holds_a_leading_engine_back(board: CoreBoard) -> None:
    clock = FakeClock(now=100.0)
    prefill = CoreShare(board, home=[0], borrowed=[1], clock=clock, leads=True)
    for _ in range(5):
        assert prefill.step_starts() == 2
        clock.now += 1.0
        prefill.step_ends()


@contextlib.contextmanager
def thread_on_core(core: int) -> Iterator[int]:
    """A thread bound to `core` alone, alive for the block; yields its id."""
    bound, done = threading.Event(), threading.Event()
    ids: list[int] = []

    def home_thread() -> None:
        os.sched_setaffinity(0, {core})  # this thread only
        ids.append(threading.get_native_id())
        bound.set()
        done.wait(10)

    thread = threading.Thread(target=home_thread)
    thread.start()
    try:
        assert bound.wait(10)
        yield ids[0]
    finally:
        done.set()
        thread.join()


def test_only_the_threads_bound_to_the_home_cores_are_found() -> None:
    core = min(os.sched_getaffinity(0))
    with thread_on_core(core) as home:
        found = cpu_priority.threads_on_cores([core])
        assert home in found
        if len(os.sched_getaffinity(0)) > 1:  # this thread may run anywhere: left alone
            assert threading.get_native_id() not in found


def test_home_threads_are_idle_while_the_partner_runs_on_their_core_and_normal_after() -> None:
    core = min(os.sched_getaffinity(0))
    with thread_on_core(core) as home:
        threads = HomeThreads([home])
        threads.follow(partner_on_home_cores=True)
        assert os.sched_getscheduler(home) == os.SCHED_IDLE
        threads.follow(partner_on_home_cores=False)
        if threads.may_return:  # CAP_SYS_NICE: back to normal priority
            assert os.sched_getscheduler(home) == os.SCHED_OTHER
        else:  # refused: it stays at idle priority, as it would have without the way back
            assert os.sched_getscheduler(home) == os.SCHED_IDLE
            assert threads.idle


def test_a_fresh_board_has_every_core_idle(board: CoreBoard) -> None:
    assert all(board.idle(core, now=0.0) for core in range(4))


def test_an_engine_borrows_its_neighbours_core_only_while_the_neighbour_is_idle(
    board: CoreBoard,
) -> None:
    clock = FakeClock(now=100.0)
    prefill = CoreShare(board, home=[0], borrowed=[1], clock=clock)
    decode = CoreShare(board, home=[1], borrowed=[0], clock=clock)
    assert decode.step_starts() == 2  # the prefill engine has not run: both cores
    decode.step_ends()
    assert prefill.step_starts() == 1  # the decode engine ran just now: its core is its own
    clock.now += 0.01
    assert decode.step_starts() == 1  # the prefill engine is in a step: home core only
    decode.step_ends()
    prefill.step_ends()
    clock.now += core_share.LINGER_S / 2
    assert decode.step_starts() == 1  # between two prefill steps of one burst
    decode.step_ends()
    clock.now += core_share.LINGER_S
    assert decode.step_starts() == 2  # the prefill engine has gone idle


def test_an_engine_that_never_ends_its_step_frees_its_cores_after_the_bound(
    board: CoreBoard,
) -> None:
    clock = FakeClock(now=100.0)
    crashed = CoreShare(board, home=[0], borrowed=[], clock=clock)
    survivor = CoreShare(board, home=[1], borrowed=[0], clock=clock)
    crashed.step_starts()
    clock.now += core_share.STEP_BOUND_S - 1
    assert survivor.step_starts() == 1
    clock.now += 2
    assert survivor.step_starts() == 2


def test_borrowed_cores_are_taken_in_order_up_to_the_first_busy_one(board: CoreBoard) -> None:
    clock = FakeClock(now=100.0)
    CoreShare(board, home=[2], borrowed=[], clock=clock).step_starts()
    wide = CoreShare(board, home=[0], borrowed=[1, 2, 3], clock=clock)
    assert wide.step_starts() == 2  # core 3 is idle, but its thread comes after core 2's


def test_engines_on_one_node_see_each_other_through_the_file(tmp_path: Path) -> None:
    clock = FakeClock(now=100.0)
    first = CoreShare(CoreBoard(tmp_path / "board", cores=2), [0], [1], clock)
    second = CoreShare(CoreBoard(tmp_path / "board", cores=2), [1], [0], clock)
    first.step_starts()
    assert second.step_starts() == 1
    assert (tmp_path / "board").stat().st_mode & 0o777 == 0o600


def test_engine_args_hand_the_placement_to_the_engine_processes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in (*core_share.ENVIRONMENT, "VLLM_CPU_OMP_THREADS_BIND"):
        monkeypatch.delenv(name, raising=False)
    board = tmp_path / "board"
    shared = EngineConfig(
        model_dir=tmp_path, device="cpu", cpu_cores="1", borrowed_cores="0", core_board=board
    )
    engine_args(shared)
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"  # the plugin places threads
    assert os.environ[core_share.HOME_ENV] == "1"
    assert os.environ[core_share.BOARD_ENV] == str(board)
    assert os.environ[core_share.BORROWED_ENV] == "0"
    assert os.environ[core_share.LEADS_ENV] == "0"  # the decode side yields
    assert float(os.environ[core_share.LEAD_SHARE_ENV]) == 1.0
    engine_args(EngineConfig(model_dir=tmp_path, device="cpu", cpu_cores="1"))
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "1"  # vLLM binds, nothing shared
    assert core_share.BOARD_ENV not in os.environ


class FakeSchedulerOutput:
    """vLLM's SchedulerOutput as far as the plugin reads it: tokens per request."""

    def __init__(self, tokens: int, requests: int = 1) -> None:
        self.total_num_scheduled_tokens = tokens
        self.num_scheduled_tokens = {f"request-{i}": tokens // requests for i in range(requests)}


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The plugin applied over fake vLLM hooks, as in an engine with home core 1 and core 0
    borrowed: returns (board, what the fake hooks saw)."""
    import contextlib

    import torch
    from vllm.utils.ompmultiprocessing import OMPProcessManager
    from vllm.v1.worker.cpu_worker import CPUWorker

    seen: dict[str, list] = {"threads": [], "places": []}

    def fake_execute_model(self, scheduler_output):
        seen["threads"].append(torch.get_num_threads())
        return "output"

    @contextlib.contextmanager
    def fake_configure_omp_envs(self, rank, local_rank):
        seen["places"].append(os.environ.get("OMP_PLACES"))
        yield

    monkeypatch.setattr(CPUWorker, "execute_model", fake_execute_model)
    monkeypatch.setattr(OMPProcessManager, "configure_omp_envs", fake_configure_omp_envs)
    monkeypatch.delenv("OMP_PLACES", raising=False)
    monkeypatch.setenv(core_share.BOARD_ENV, str(tmp_path / "board"))
    monkeypatch.setenv(core_share.HOME_ENV, "1")
    monkeypatch.setenv(core_share.BORROWED_ENV, "0")
    threads = torch.get_num_threads()
    core_share.apply()
    core_share.apply()  # twice: still one wrapper
    yield CoreBoard(tmp_path / "board"), seen
    torch._C.set_num_threads(threads)


def test_the_plugin_places_the_workers_threads_only_while_it_starts_them(plugin) -> None:
    from vllm.utils.ompmultiprocessing import OMPProcessManager

    _, seen = plugin
    with OMPProcessManager.configure_omp_envs(object(), rank=0, local_rank=0):
        pass
    assert seen["places"] == ["{1},{0}"]
    assert "OMP_PLACES" not in os.environ  # the engine core itself stays unbound


def test_the_plugin_runs_each_forward_pass_with_the_cores_the_board_allows(plugin) -> None:
    from vllm.v1.worker.cpu_worker import CPUWorker

    board, seen = plugin
    assert CPUWorker.execute_model(object(), FakeSchedulerOutput(tokens=8)) == "output"
    assert not board.idle(1, now=time.monotonic())  # its home core is marked
    board.busy_until(0, time.monotonic() + 60)  # the neighbour starts a long step
    CPUWorker.execute_model(object(), FakeSchedulerOutput(tokens=8))
    CPUWorker.execute_model(object(), FakeSchedulerOutput(tokens=9))  # a batch size unseen
    assert seen["threads"] == [2, 1, 2]
    board.busy_until(1, 0.0)
    CPUWorker.execute_model(object(), FakeSchedulerOutput(tokens=0))  # no forward pass
    assert board.idle(1, now=time.monotonic())  # a pass without tokens marks nothing


class FakeLayer(torch.nn.Module):
    """Stands in for one of the model's modules: records the thread count it ran with."""

    def __init__(self, name: str, seen: list[tuple[str, int]]) -> None:
        super().__init__()
        self.name, self.seen = name, seen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.name, torch.get_num_threads()))
        return x


@pytest.mark.parametrize(
    ("prefill_busy_before", "prefill_busy_after", "widths"),
    [
        # the prefill wakes mid-step: the decode leaves its core after the next attention
        (False, True, [("attention", 2), ("mlp", 2), ("attention", 2), ("mlp", 1)]),
        # the prefill goes idle mid-step: its core is taken back, attention keeps its width
        (True, False, [("attention", 1), ("mlp", 1), ("attention", 1), ("mlp", 2)]),
    ],
)
def test_a_yielding_engine_takes_or_leaves_a_core_after_each_attention_layer(
    plugin,
    monkeypatch: pytest.MonkeyPatch,
    prefill_busy_before: bool,
    prefill_busy_after: bool,
    widths: list[tuple[str, int]],
) -> None:
    board, _ = plugin
    seen: list[tuple[str, int]] = []
    layers = [FakeLayer(name, seen) for name in ("attention", "mlp", "attention", "mlp")]
    monkeypatch.setattr(core_share, "_attention_layers", lambda worker: layers[::2])

    def mark_prefill(busy: bool) -> None:
        board.busy_until(0, time.monotonic() + 60 if busy else 0.0)

    def forward_pass(self, scheduler_output) -> str:
        x = torch.zeros(1)
        layers[1](layers[0](x))
        mark_prefill(prefill_busy_after)
        layers[3](layers[2](x))
        return "output"

    step = core_share._counting_threads(forward_pass)
    step(object(), FakeSchedulerOutput(tokens=8))  # a new batch size: the whole step wide
    assert seen == [("attention", 2), ("mlp", 2), ("attention", 2), ("mlp", 2)]
    seen.clear()
    mark_prefill(prefill_busy_before)
    step(object(), FakeSchedulerOutput(tokens=8))
    assert seen == widths


def test_a_leading_engines_plugin_runs_wide(plugin, monkeypatch: pytest.MonkeyPatch) -> None:
    board, _ = plugin
    monkeypatch.setenv(core_share.LEADS_ENV, "1")
    board.busy_until(0, time.monotonic() + 60)  # its partner's core is busy
    leading = core_share._counting_threads(lambda self, output: board.lent(0, time.monotonic()))
    assert leading(object(), FakeSchedulerOutput(tokens=8))  # the decode's core lent meanwhile
    assert torch.get_num_threads() == 2
    assert not board.lent(0, now=time.monotonic())  # and given back at the step's end


def widths_chosen(choice: WidthChoice, tokens: int, steps: int, seconds) -> list[bool]:
    """Runs `steps` clean steps of `tokens`; `seconds(wide)` says how long each took."""
    chosen = []
    for _ in range(steps):
        wide = choice.wide(tokens)
        choice.ran(tokens, wide, seconds(wide))
        chosen.append(wide)
    return chosen


def test_a_step_size_tries_both_widths_then_keeps_to_the_faster() -> None:
    choice = WidthChoice()
    first = WidthChoice.MIN_STEPS
    chosen = widths_chosen(choice, 1, 2 * first + 10, lambda wide: 0.005 if wide else 0.0034)
    assert chosen[:first] == [True] * first  # wide first, as before any figure
    assert chosen[first : 2 * first] == [False] * first
    assert chosen[2 * first :] == [False] * 10  # narrow was faster
    # a step size where wide pays keeps borrowing
    chosen = widths_chosen(choice, 32, 2 * first + 10, lambda wide: 0.07 if wide else 0.2)
    assert chosen[2 * first :] == [True] * 10


def test_the_slower_width_is_tried_again_now_and_then_and_can_win_back() -> None:
    choice = WidthChoice()
    period = WidthChoice.RECHECK_EVERY
    chosen = widths_chosen(choice, 8, 3 * period, lambda wide: 0.005 if wide else 0.004)
    # wide for its first steps, then once per period after the first (steps 64 and 128)
    assert chosen.count(True) == WidthChoice.MIN_STEPS + 2
    # the engine's batches change: wide steps are now the faster, and the rechecks see it
    chosen = widths_chosen(choice, 8, 10 * period, lambda wide: 0.002 if wide else 0.004)
    assert chosen[-period:].count(False) == 1  # wide again, narrow once per period


@pytest.mark.parametrize("leads", [False, True])
def test_an_engine_stops_borrowing_where_wide_steps_were_slower(
    plugin, monkeypatch: pytest.MonkeyPatch, leads: bool
) -> None:
    if leads:
        monkeypatch.setenv(core_share.LEADS_ENV, "1")
    clock = FakeClock(now=0.0)
    monkeypatch.setattr(core_share, "_step_clock", clock)
    widths: list[int] = []

    def forward_pass(self, scheduler_output) -> str:
        widths.append(torch.get_num_threads())
        clock.now += 0.005 if torch.get_num_threads() == 2 else 0.0034  # a tiny model's step
        return "output"

    step = core_share._counting_threads(forward_pass)
    first = WidthChoice.MIN_STEPS
    for _ in range(1 + 2 * first + 5):
        step(object(), FakeSchedulerOutput(tokens=1))
    # a new batch size builds its kernels wide, then wide and narrow are timed, then narrow
    assert widths == [2] + [2] * first + [1] * first + [1] * 5


def test_a_leading_engines_share_is_not_charged_for_a_step_it_keeps_home(
    board: CoreBoard,
) -> None:
    clock = FakeClock(now=100.0)
    prefill = CoreShare(board, home=[0], borrowed=[1], clock=clock, leads=True, lead_share=0.5)
    board.busy_until(1, clock.now + 60)  # the decode is busy throughout
    assert prefill.step_starts() == 2
    prefill.stays_home()
    clock.now += 0.9
    prefill.step_ends()
    assert prefill.step_starts() == 2  # nothing spent: still within its share
    clock.now += 0.9
    prefill.step_ends()
    assert prefill.step_starts() == 1  # 0.9 s of the last second on its partner's core


def test_a_batch_size_runs_wide_until_it_is_among_the_kernels_the_cache_keeps() -> None:
    wide = WideShapes(capacity=3)
    assert wide.first_seen((8, 1))
    assert not wide.first_seen((8, 1))
    assert wide.first_seen((8, 2))  # 2 requests: the sampler's batch is new
    assert not wide.first_seen((1, 1))  # both already built wide
    wide.first_seen((5, 5))  # evicts 8, the least recently used size
    assert wide.first_seen((8, 1))
