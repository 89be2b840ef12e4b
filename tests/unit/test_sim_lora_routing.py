"""LoRA routing in simulated time: a request's steps worked by hand, and a router that
keeps high ranks apart meeting an SLO that least-loaded placement misses."""

from __future__ import annotations

import pytest

from cluster.rank_routing import (
    DecodeCostModel,
    LeastLoadedLora,
    PrefillCostModel,
    RandomLora,
    RankAware,
)
from cluster.sim.lora_routing import SimRequest, poisson_requests, simulate

FLAT = DecodeCostModel("padded", 0.0, 0.010)
PREFILL = PrefillCostModel(0.0, 0.005)


def test_one_request_worked_by_hand() -> None:
    # Prefill step 5 ms (first token at 5 ms), then two decode steps of 10 ms: TPOT 10 ms.
    result = simulate([SimRequest(0.0, 8, 16, 3)], 1, LeastLoadedLora(), FLAT, PREFILL)
    assert result.ttfts_s == [pytest.approx(0.005)]
    assert result.tpots_s == [pytest.approx(0.010)]
    assert result.placed == {"decode-0": 1}


def test_a_request_arriving_mid_step_waits_for_the_next_one() -> None:
    requests = [SimRequest(0.0, 8, 16, 2), SimRequest(0.001, 8, 16, 2)]
    result = simulate(requests, 1, LeastLoadedLora(), FLAT, PREFILL)
    # The second joins the step after the first's prefill: 5 ms + (10 + 5) ms = 20 ms.
    assert sorted(result.ttfts_s) == [pytest.approx(0.005), pytest.approx(0.019)]


def test_rank_aware_keeps_rank_64_apart_and_meets_the_slo() -> None:
    padded = DecodeCostModel("padded", 0.0001, 0.010)  # 64 x 4 rows = +25.6 ms a step
    ranks = [8, 64, 8, 64] * 50
    requests = poisson_requests(ranks, rate=5.0, prompt_tokens=32, output_tokens=16, seed=1)
    slo = 0.025
    aware = simulate(requests, 2, RankAware(padded, PREFILL, slo, 16), padded, PREFILL)
    spread = simulate(requests, 2, LeastLoadedLora(), padded, PREFILL)
    chance = simulate(requests, 2, RandomLora(seed=3), padded, PREFILL)
    assert len(aware.tpots_s) == len(requests)
    assert aware.slo_attainment(slo) >= 0.9
    assert aware.slo_attainment(slo) > spread.slo_attainment(slo)
    assert aware.slo_attainment(slo) > chance.slo_attainment(slo)
