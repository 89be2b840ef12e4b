"""The policies made faster for the simulator's scale choose exactly as the plain rule does:
`LeastLoaded.indexed` against `LeastLoaded.choose`, and the one-sort power-of-two and
least-work dispatchers (over a plain map or `LoadsById`) against a straightforward
reference, on random loads and seeds; and
a simulated decode instance's load report, which keeps its waiting work as it goes,
against `decode_load` over everything it holds."""

from __future__ import annotations

import random

import pytest

from cluster.decode_admission import make_admission
from cluster.decode_dispatch import LeastWork, PowerOfTwo, heavy_fraction_after
from cluster.decode_load import DecodeProgress, decode_load
from cluster.placement import InstanceLoad, LeastLoaded, LoadsById, RequestNeed
from cluster.sim.cost_model import load_cost_model
from cluster.sim.events import EventQueue
from cluster.sim.instances import DecodeInstance, Meter
from cluster.sim.workload import SimRequest


def random_loads(rng: random.Random, count: int) -> dict[str, InstanceLoad]:
    ids = [f"i-{n}" for n in range(count)]
    rng.shuffle(ids)  # the map's order must not matter
    return {
        iid: InstanceLoad(
            iid,
            queued=rng.randrange(4),
            running=rng.randrange(4),
            free_kv_tokens=rng.choice([0, 100, 500, 1000, 2000]),
            heavy_decodes=rng.randrange(3),
            light_decodes=rng.randrange(3),
            predicted_tokens=rng.randrange(50),
        )
        for iid in ids
    }


def random_need(rng: random.Random) -> RequestNeed:
    return RequestNeed(kv_tokens=rng.choice([1, 400, 900, 1500, 5000]), heavy=rng.random() < 0.5)


@pytest.mark.parametrize("seed", range(20))
def test_the_least_loaded_index_chooses_as_least_loaded(seed: int) -> None:
    rng = random.Random(seed)
    loads = random_loads(rng, rng.randint(1, 40))
    policy = LeastLoaded()
    index = policy.indexed(loads)
    for _ in range(300):
        assert index.choose() == policy.choose(loads)
        load = loads[rng.choice(sorted(loads))]
        change = rng.choice(["placed", "left", "dispatched"])
        if change == "dispatched":
            load.dispatched(random_need(rng), 5)
        else:
            getattr(load, change)()
        index.changed(load)


def test_the_least_loaded_index_of_nothing_chooses_nothing() -> None:
    assert LeastLoaded().indexed({}).choose() is None


class ReferencePowerOfTwo:
    """The dispatcher's rule written plainly: sort by id, split, sample two, best wins."""

    def __init__(self, seed: int, least_work: bool) -> None:
        self._rng = random.Random(seed)
        self._least_work = least_work

    def choose(self, loads: dict[str, InstanceLoad], need: RequestNeed) -> str | None:
        ordered = sorted(loads.values(), key=lambda load: load.instance_id)
        alpha = [load for load in ordered if load.free_kv_tokens >= need.kv_tokens]
        beta = [load for load in ordered if load.free_kv_tokens < need.kv_tokens]
        pool = alpha or beta
        if not pool:
            return None
        candidates = self._rng.sample(pool, min(2, len(pool)))
        if self._least_work:
            key = lambda load: (load.predicted_tokens, load.outstanding, load.instance_id)  # noqa: E731
        else:
            key = lambda load: (  # noqa: E731
                heavy_fraction_after(load, need),
                load.outstanding,
                load.instance_id,
            )
        return min(candidates, key=key).instance_id


@pytest.mark.parametrize("dispatcher", [PowerOfTwo, LeastWork])
@pytest.mark.parametrize("seed", range(10))
def test_the_dispatchers_choose_as_the_reference(dispatcher: type[PowerOfTwo], seed: int) -> None:
    rng = random.Random(seed)
    policy = dispatcher(seed)
    reference = ReferencePowerOfTwo(seed, least_work=dispatcher is LeastWork)
    for _ in range(200):
        loads = random_loads(rng, rng.randint(0, 12))
        need = random_need(rng)
        given = LoadsById(loads) if rng.random() < 0.5 else loads
        assert policy.choose(given, need) == reference.choose(loads, need)


def test_a_decode_instance_reports_what_decode_load_sums() -> None:
    cost = load_cost_model("opt13b_tetriinfer")
    events = EventQueue()
    instance = DecodeInstance("d", cost, make_admission("reserve_dynamic"), events, Meter(),
                              lambda request, iid: None)  # fmt: skip
    rng = random.Random(0)
    for index in range(60):
        request = SimRequest(index, 0.0, rng.randint(16, 1500), rng.randint(8, 512), family=0)
        instance.submit(request, predicted_output=rng.randint(0, 300), heavy=rng.random() < 0.5)
    for until_s in (0.0, 0.5, 2.0, 5.0, 9.0, 20.0):
        events.run(until_s=until_s)
        waiting = [DecodeProgress(s.request.prompt_tokens, s.predicted_output, False)
                   for s in instance.awaiting_admission]  # fmt: skip
        plain = decode_load(
            InstanceLoad("d", queued=len(instance.awaiting_admission),
                         running=len(instance.admitted)),
            instance._running(),
            sum(decode.work_left for decode in waiting),
            instance.capacity_tokens,
        )  # fmt: skip
        assert instance.load() == plain
