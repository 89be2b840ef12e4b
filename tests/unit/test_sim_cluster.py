"""The cluster simulator: a case worked by hand, determinism, conservation, flips."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from cluster.config import SchedulingConfig
from cluster.sim.baseline import Colocated, simulate_colocated
from cluster.sim.cluster_sim import ClusterSim, Topology, simulate_cluster
from cluster.sim.workload import (
    BENCH_DECODE,
    SimRequest,
    make_requests,
    workload_shape,
)
from cluster.workload_mix import WORKLOADS
from tests.unit.sim_models import linear_model


def test_two_requests_by_hand() -> None:
    """A (150 prompt tokens) arrives at 0, B (80) at 0.5, while A's first 100-token pass
    runs (0-1.0). The second pass packs A's last 50 tokens with B's first 50 (1.0-2.0):
    A's first token at 2.0. B's last 30 tokens: 0.3 s, its first token at 2.3 (TTFT 1.8).
    A's KV read holds decode-0's link 2.0-2.5, then A makes tokens 2 and 3 in two 0.1 s
    steps: done at 2.7. B's read waits for the link, 2.5-3.0; one step: done at 3.1."""
    a = SimRequest(index=0, arrival_s=0.0, prompt_tokens=150, output_tokens=3, family=0)
    b = SimRequest(index=1, arrival_s=0.5, prompt_tokens=80, output_tokens=2, family=0)
    result = simulate_cluster(linear_model(), [a, b])
    assert (a.ttft_s, a.jct_s) == (pytest.approx(2.0), pytest.approx(2.7))
    assert (b.ttft_s, b.jct_s) == (pytest.approx(1.8), pytest.approx(2.6))
    assert result.finished == 2 and result.makespan_s == pytest.approx(3.1)
    assert result.ttft.mean_s == pytest.approx(1.9)
    assert result.jct.mean_s == pytest.approx(2.65)


def test_colocated_by_hand_without_chunking() -> None:
    """One engine, the same two requests: A's whole prompt in one pass (0-1.5, first token
    at 1.5); B, waiting since 0.5, alone in the next prefill-only pass (1.5-2.3, TTFT 1.8);
    then both decode: B ends after one 0.1 s step (2.4), A after a second (2.5)."""
    a = SimRequest(index=0, arrival_s=0.0, prompt_tokens=150, output_tokens=3, family=0)
    b = SimRequest(index=1, arrival_s=0.5, prompt_tokens=80, output_tokens=2, family=0)
    simulate_colocated(linear_model(), [a, b], instances=1, chunked=False)
    assert (a.ttft_s, b.ttft_s) == (pytest.approx(1.5), pytest.approx(1.8))
    assert (a.jct_s, b.jct_s) == (pytest.approx(2.5), pytest.approx(1.9))


def mixed_requests(seed: int, count: int = 150) -> list[SimRequest]:
    shape = workload_shape(128, 1024, BENCH_DECODE)
    return make_requests("Mixed", count, shape, rate_per_s=30.0, seed=seed)


def timeline(requests: list[SimRequest]) -> list[tuple[float, float]]:
    return [(r.first_token_s, r.finished_s) for r in requests]


def run_cluster(seed: int) -> list[tuple[float, float]]:
    requests = mixed_requests(seed)
    scheduling = SchedulingConfig(dispatcher="power_of_two", seed=seed)
    simulate_cluster(linear_model(20_000), requests, Topology(prefill=2, decode=3), scheduling)
    return timeline(requests)


def test_the_same_seed_gives_the_same_run_and_another_seed_another() -> None:
    assert run_cluster(seed=3) == run_cluster(seed=3)
    assert run_cluster(seed=3) != run_cluster(seed=4)


@pytest.mark.parametrize("workload", WORKLOADS)
@pytest.mark.parametrize("admission", ["greedy", "reserve_static", "reserve_dynamic"])
def test_every_request_ends_exactly_once(workload: str, admission: str) -> None:
    shape = workload_shape(128, 1024, BENCH_DECODE)
    requests = make_requests(workload, 120, shape, rate_per_s=40.0, seed=1)
    sim = ClusterSim(
        linear_model(capacity=3_000),  # small: greedy admission must preempt
        requests,
        Topology(prefill=2, decode=2),
        SchedulingConfig(admission=admission),
    )
    ended: Counter[int] = Counter()
    finish = sim._finished

    def count(request: SimRequest, instance_id: str) -> None:
        ended[request.index] += 1
        finish(request, instance_id)

    for instance in sim.instances.values():
        if instance.role == "decode":
            instance.on_finished = count
    sim._finished = count  # requests that end at their first token
    result = sim.run()
    assert sorted(ended) == [r.index for r in requests]
    assert set(ended.values()) == {1}
    assert result.finished == len(requests)
    assert all(0 <= r.ttft_s <= r.jct_s for r in requests)


@pytest.mark.parametrize("chunked", [True, False])
def test_the_colocated_baseline_ends_every_request_once(chunked: bool) -> None:
    requests = mixed_requests(seed=2, count=150)
    sim = Colocated(linear_model(capacity=3_000), requests, instances=2, chunked=chunked)
    result = sim.run()
    assert sim.done == result.finished == len(requests)
    assert all(0 <= r.ttft_s <= r.jct_s for r in requests)
    assert not any(math.isnan(r.jct_s) for r in requests)


def test_an_idle_prefill_instance_flips_to_decode_under_decode_load() -> None:
    shape = workload_shape(128, 1024, BENCH_DECODE)
    requests = make_requests("LPHD", 200, shape, rate_per_s=20.0, seed=0)
    scheduling = SchedulingConfig(flip_idle_rounds=2)
    sim = ClusterSim(linear_model(), requests, Topology(prefill=3, decode=1), scheduling)
    result = sim.run()
    assert result.flips >= 1
    assert sum(usage.role == "decode" for usage in result.instances) >= 2
    assert result.finished == len(requests)


def test_a_full_cache_preempts_the_newest_sequence_and_recomputes_it() -> None:
    """Capacity 300 KV tokens: two 100-token prompts of 150 outputs cannot both grow to
    250. The newer is preempted and waits for the older to end (then recomputes), so it
    ends at least the older one's remaining steps later than with room for both."""

    def pair() -> list[SimRequest]:
        return [
            SimRequest(index=i, arrival_s=0.0, prompt_tokens=100, output_tokens=150, family=2)
            for i in range(2)
        ]

    roomy, tight = pair(), pair()
    simulate_colocated(linear_model(capacity=10_000), roomy, instances=1)
    simulate_colocated(linear_model(capacity=300), tight, instances=1)
    assert tight[0].jct_s == pytest.approx(roomy[0].jct_s, abs=1.0)
    assert tight[1].finished_s > tight[0].finished_s + 1.0  # recomputed after the first
    assert tight[1].jct_s > roomy[1].jct_s + 5.0
