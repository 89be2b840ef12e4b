"""Rank-aware routing on hand-built cases: the cost models, their fit and R², CaraServe's
rule (least added cost, infinite over the SLO, weighed by the requests held) and the
baselines it is compared with."""

from __future__ import annotations

import math

import pytest

from cluster.rank_routing import (
    DecodeCostModel,
    FirstFit,
    LeastLoadedLora,
    LoraLoad,
    LoraRequest,
    PrefillCostModel,
    RandomLora,
    RankAware,
    fit_decode_model,
)

# 1 ms per (row x rank unit) padded, plus 10 ms; prefill 0.1 ms per token plus 5 ms.
PADDED = DecodeCostModel("padded", 0.001, 0.010)
UNPADDED = DecodeCostModel("unpadded", 0.001, 0.010)
PREFILL = PrefillCostModel(0.0001, 0.005)


def test_padded_steps_pay_the_largest_rank_for_every_row() -> None:
    assert PADDED.step_s((8, 64)) == pytest.approx(0.001 * 2 * 64 + 0.010)
    assert UNPADDED.step_s((8, 64)) == pytest.approx(0.001 * 72 + 0.010)
    assert PADDED.step_s(()) == 0.0
    assert PREFILL.pass_s(100) == pytest.approx(0.015)
    assert PREFILL.pass_s(0) == 0.0


def test_a_fit_recovers_the_line_and_says_how_well_it_fits() -> None:
    batches = [(8,), (8, 8), (16, 8), (32, 8, 8), (64,), (64, 64, 8)]
    exact = [(ranks, PADDED.step_s(ranks)) for ranks in batches]
    model, r2 = fit_decode_model(exact, "padded")
    assert model.per_unit_s == pytest.approx(0.001)
    assert model.base_s == pytest.approx(0.010)
    assert r2 == pytest.approx(1.0)
    # The same steps seen through the unpadded model fit worse.
    _, unpadded_r2 = fit_decode_model(exact, "unpadded")
    assert unpadded_r2 < 0.99
    with pytest.raises(ValueError, match="two samples"):
        fit_decode_model(exact[:1], "padded")


def test_a_rank_64_request_goes_where_it_pads_nothing() -> None:
    # Both hold two requests; a's are rank 8, b's rank 64. Padded, a 64 on a pays 3 x 64
    # units against 2 x 8 before (+176 ms); on b it adds one row of 64 (+64 ms).
    router = RankAware(PADDED, PREFILL, slo_step_s=1.0)
    loads = {"a": LoraLoad("a", (8, 8)), "b": LoraLoad("b", (64, 64))}
    assert router.choose(loads, LoraRequest(rank=64, prompt_tokens=100)) == "b"
    # A rank-8 request adds 8 ms on a and 64 ms on b.
    assert router.choose(loads, LoraRequest(rank=8, prompt_tokens=100)) == "a"


def test_an_instance_over_the_slo_is_never_chosen_while_another_fits() -> None:
    # Unpadded, b holds fewer requests (it would win without the SLO) but its step with the
    # request would be 10 + 3 x 64 = 202 ms; a's 10 + 32 + 64 = 106 ms.
    loads = {"a": LoraLoad("a", (8, 8, 8, 8)), "b": LoraLoad("b", (64, 64))}
    request = LoraRequest(rank=64, prompt_tokens=10)
    assert RankAware(UNPADDED, PREFILL, slo_step_s=1.0).choose(loads, request) == "b"
    router = RankAware(UNPADDED, PREFILL, slo_step_s=0.150)
    assert math.isinf(router.cost(loads["b"], request))
    assert router.choose(loads, request) == "a"


def test_over_the_slo_everywhere_the_shortest_step_wins() -> None:
    router = RankAware(PADDED, PREFILL, slo_step_s=0.001)
    loads = {"a": LoraLoad("a", (64,)), "b": LoraLoad("b", (8,))}
    assert router.choose(loads, LoraRequest(rank=8, prompt_tokens=10)) == "b"


def test_a_long_prefill_queue_costs_its_share_per_output_token() -> None:
    # Unpadded, a rank-8 request adds 8 ms to a decode step anywhere; behind b's long queue
    # its prefill adds 10 ms (100 tokens), spread over 10 output tokens; b holds one request.
    router = RankAware(UNPADDED, PREFILL, slo_step_s=1.0, mean_output_tokens=10)
    loads = {"a": LoraLoad("a", (8, 8, 8), 0), "b": LoraLoad("b", (8,), 5000)}
    assert router.choose(loads, LoraRequest(rank=8, prompt_tokens=100)) == "b"
    # On a, whose queue is empty, it also pays the pass's fixed 5 ms, for three requests.
    assert router.cost(loads["a"], LoraRequest(8, 100)) == pytest.approx(
        (PREFILL.pass_s(100) / 10 + 0.008) * 3
    )


def test_an_idle_instance_costs_nothing() -> None:
    router = RankAware(PADDED, PREFILL, slo_step_s=1.0)
    loads = {"a": LoraLoad("a", (8,)), "b": LoraLoad("b")}
    assert router.choose(loads, LoraRequest(rank=64, prompt_tokens=500)) == "b"


def test_the_baselines() -> None:
    loads = {"a": LoraLoad("a", (8, 8)), "b": LoraLoad("b", (64,)), "c": LoraLoad("c", (8,))}
    request = LoraRequest(rank=64, prompt_tokens=10)
    assert LeastLoadedLora().choose(loads, request) == "b"  # first of the two holding one
    assert FirstFit(PADDED, slo_step_s=0.150).choose(loads, request) == "b"  # a: 202 ms
    assert FirstFit(PADDED, slo_step_s=0.001).choose(loads, request) == "b"  # none fits
    picks = [RandomLora(seed=1).choose(loads, request) for _ in range(3)]
    assert picks == [RandomLora(seed=1).choose(loads, request)] * 3  # seeded
    draws = RandomLora(seed=2)
    assert {draws.choose(loads, request) for _ in range(50)} == {"a", "b", "c"}
    for router in (LeastLoadedLora(), RandomLora(), FirstFit(PADDED, 1.0)):
        assert router.choose({}, request) is None
    assert RankAware(PADDED, PREFILL, 1.0).choose({}, request) is None
