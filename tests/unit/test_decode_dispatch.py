"""The decode dispatcher: alpha before beta, the heavy:light tie-break, the least predicted
work, selection by name."""

from __future__ import annotations

import pytest

from cluster.decode_dispatch import (
    DISPATCHERS,
    LeastWork,
    PowerOfTwo,
    RandomChoice,
    decode_need,
    heavy_fraction_after,
    make_dispatcher,
)
from cluster.placement import InstanceLoad, LeastLoaded, RequestNeed

SEEDS = range(200)


def loads_of(*loads: InstanceLoad) -> dict[str, InstanceLoad]:
    return {load.instance_id: load for load in loads}


def one_alpha_many_beta() -> dict[str, InstanceLoad]:
    """Only "roomy" holds 1000 tokens; the rest are emptier of heavy work but too full."""
    return loads_of(
        InstanceLoad("roomy", free_kv_tokens=1000, heavy_decodes=9, light_decodes=1, running=10),
        InstanceLoad("b1", free_kv_tokens=999, light_decodes=5),
        InstanceLoad("b2", free_kv_tokens=10),
        InstanceLoad("b3", free_kv_tokens=0, light_decodes=2),
        InstanceLoad("b4", free_kv_tokens=500),
    )


@pytest.mark.parametrize("heavy", [False, True])
def test_never_picks_beta_while_alpha_has_a_member(heavy: bool) -> None:
    need = RequestNeed(kv_tokens=1000, heavy=heavy)
    chosen = {PowerOfTwo(seed).choose(one_alpha_many_beta(), need) for seed in SEEDS}
    assert chosen == {"roomy"}


def test_picks_from_beta_when_alpha_is_empty() -> None:
    loads = loads_of(InstanceLoad("a", free_kv_tokens=10), InstanceLoad("b", free_kv_tokens=20))
    need = RequestNeed(kv_tokens=5000)
    chosen = {PowerOfTwo(seed).choose(loads, need) for seed in SEEDS}
    assert chosen <= {"a", "b"}
    assert chosen


def test_among_two_candidates_the_lower_heavy_fraction_wins() -> None:
    loads = loads_of(
        InstanceLoad("mostly_heavy", free_kv_tokens=100, heavy_decodes=3, light_decodes=1),
        InstanceLoad("mostly_light", free_kv_tokens=100, heavy_decodes=1, light_decodes=3),
    )
    need = RequestNeed(kv_tokens=50, heavy=True)
    assert {PowerOfTwo(seed).choose(loads, need) for seed in SEEDS} == {"mostly_light"}


def test_equal_heavy_fraction_goes_to_fewer_outstanding_then_id() -> None:
    busy = InstanceLoad("a", free_kv_tokens=100, light_decodes=1, running=5)
    idle = InstanceLoad("b", free_kv_tokens=100, light_decodes=1, running=1)
    assert PowerOfTwo().choose(loads_of(busy, idle), RequestNeed(kv_tokens=1)) == "b"
    twin = InstanceLoad("c", free_kv_tokens=100, light_decodes=1, running=1)
    assert PowerOfTwo().choose(loads_of(twin, idle), RequestNeed(kv_tokens=1)) == "b"


def test_samples_spread_over_alpha_when_it_is_large() -> None:
    loads = loads_of(*(InstanceLoad(f"d{i}", free_kv_tokens=100) for i in range(6)))
    chosen = {PowerOfTwo(seed).choose(loads) for seed in SEEDS}
    assert len(chosen) > 2


def test_same_seed_same_choices() -> None:
    loads = loads_of(*(InstanceLoad(f"d{i}", free_kv_tokens=100) for i in range(6)))
    first, second = PowerOfTwo(7), PowerOfTwo(7)
    assert [first.choose(loads) for _ in range(20)] == [second.choose(loads) for _ in range(20)]


def test_heavy_fraction_counts_the_request() -> None:
    load = InstanceLoad("a", heavy_decodes=1, light_decodes=2)
    assert heavy_fraction_after(load, RequestNeed(heavy=True)) == pytest.approx(2 / 4)
    assert heavy_fraction_after(load, RequestNeed(heavy=False)) == pytest.approx(1 / 4)
    assert heavy_fraction_after(InstanceLoad("empty"), RequestNeed(heavy=True)) == 1.0


@pytest.mark.parametrize("name", sorted(DISPATCHERS))
def test_no_instances_no_choice(name: str) -> None:
    assert make_dispatcher(name).choose({}) is None


def test_random_reaches_every_instance() -> None:
    loads = loads_of(*(InstanceLoad(f"d{i}") for i in range(3)))
    dispatcher = make_dispatcher("random", seed=3)
    assert isinstance(dispatcher, RandomChoice)
    assert {dispatcher.choose(loads) for _ in range(100)} == {"d0", "d1", "d2"}


def test_least_loaded_by_name_ignores_the_need() -> None:
    loads = loads_of(
        InstanceLoad("quiet", running=0, free_kv_tokens=1),
        InstanceLoad("busy", running=4, free_kv_tokens=10_000),
    )
    dispatcher = make_dispatcher("least_loaded")
    assert isinstance(dispatcher, LeastLoaded)
    assert dispatcher.choose(loads, RequestNeed(kv_tokens=5000, heavy=True)) == "quiet"
    assert dispatcher.choose(loads) == "quiet"


def test_power_of_two_by_name() -> None:
    assert isinstance(make_dispatcher("power_of_two", seed=1), PowerOfTwo)


def test_bad_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="least_loaded, least_work, power_of_two, random"):
        make_dispatcher("round_robin")


def test_least_work_takes_the_instance_with_fewer_predicted_tokens_left() -> None:
    loads = loads_of(
        InstanceLoad("fast", free_kv_tokens=5000, predicted_tokens=300, running=6),
        InstanceLoad("slowed", free_kv_tokens=5000, predicted_tokens=900, running=4),
    )
    assert {LeastWork(seed).choose(loads, RequestNeed(100)) for seed in SEEDS} == {"fast"}


def test_least_work_keeps_to_instances_with_room() -> None:
    loads = one_alpha_many_beta()
    loads["roomy"].predicted_tokens = 10_000
    chosen = {LeastWork(seed).choose(loads, RequestNeed(kv_tokens=1000)) for seed in SEEDS}
    assert chosen == {"roomy"}


def test_decode_need_counts_the_prompt_and_predicted_tokens_and_marks_heavy_decodes() -> None:
    assert decode_need(100, 63, heavy_decode_tokens=64) == RequestNeed(163, heavy=False)
    assert decode_need(100, 64, heavy_decode_tokens=64) == RequestNeed(164, heavy=True)


def test_a_dispatch_counts_in_the_load_until_the_next_report() -> None:
    load = InstanceLoad("d", queued=1, free_kv_tokens=150, predicted_tokens=10, light_decodes=1)
    load.dispatched(RequestNeed(kv_tokens=100, heavy=True), predicted_tokens=0)
    assert (load.queued, load.free_kv_tokens, load.predicted_tokens) == (2, 50, 11)
    assert (load.heavy_decodes, load.light_decodes) == (1, 1)
    load.dispatched(RequestNeed(kv_tokens=100, heavy=False), predicted_tokens=30)
    assert (load.queued, load.free_kv_tokens, load.predicted_tokens) == (3, 0, 41)
    assert (load.heavy_decodes, load.light_decodes) == (1, 2)


def test_placements_count_until_a_report_shows_them() -> None:
    known = InstanceLoad("p")
    known.placed()
    known.placed()
    known.left()
    assert known.queued == 1
    known.left()
    known.left()  # a late report of a request never counted: no negative queue
    assert known.queued == 0
    known.placed()
    assert InstanceLoad("p", queued=0, running=2).reported(known).queued == 1
    assert InstanceLoad("p", queued=3).reported(known).queued == 3
