"""Engines that share a node's cores: the lead budget, a core pair's pass times, and a
cluster run worked by hand."""

from __future__ import annotations

import pytest

from cluster.core_sharing import LINGER_S, LeadBudget
from cluster.sim.cluster_sim import Topology, simulate_cluster
from cluster.sim.core_pair import CorePair
from cluster.sim.cost_model import NarrowCost
from cluster.sim.workload import SimRequest
from tests.unit.sim_models import linear_model

NARROW = NarrowCost(prefill=2.0, decode=1.5)


def test_the_lead_budget_allows_its_share_of_the_last_window() -> None:
    budget = LeadBudget(share=0.5, window_s=1.0)
    assert budget.allows(0.0)
    budget.spent(0.0, 0.5)
    assert not budget.allows(0.6)  # 0.5 s of the last second used
    assert budget.allows(1.2)  # the window now holds 0.3 s of it
    assert LeadBudget(share=1.0).allows(0.0)


def test_a_prefill_pass_runs_wide_while_its_partner_is_idle_or_within_its_share() -> None:
    pair = CorePair(lead_share=0.5, narrow=NARROW)
    assert pair.leading_pass(0.0, 1.0) == 1.0  # decode idle: free of charge
    assert pair.yielding_pass(1.0, 0.1) == pytest.approx(0.1 * 1.5)  # prefill lingers: narrow
    assert pair.leading_pass(1.1, 0.5) == 0.5  # decode busy: within the share, wide
    assert pair.yielding_pass(1.2, 0.1) == pytest.approx(0.4 + 0.15)  # waits for it
    assert pair.leading_pass(1.6, 0.2) == pytest.approx(0.4)  # share spent: narrow


def test_a_decode_step_waits_for_a_wide_prefill_pass_and_runs_wide_once_it_is_idle() -> None:
    pair = CorePair(lead_share=0.5, narrow=NARROW)
    assert pair.yielding_pass(0.0, 0.1) == 0.1  # prefill idle: wide
    assert pair.leading_pass(0.05, 1.0) == 1.0  # decode busy, within the share: wide
    # due at 0.1: waits for the pass to end (1.05), then runs narrow
    assert pair.yielding_pass(0.1, 0.1) == pytest.approx(0.95 + 0.15)
    assert pair.yielding_pass(1.05 + LINGER_S, 0.1) == 0.1  # prefill idle again: wide


def two_requests() -> tuple[SimRequest, SimRequest]:
    a = SimRequest(index=0, arrival_s=0.0, prompt_tokens=100, output_tokens=3, family=0)
    b = SimRequest(index=1, arrival_s=1.55, prompt_tokens=100, output_tokens=2, family=0)
    return a, b


def test_shared_cores_by_hand() -> None:
    """A's prefill runs wide with its partner idle (0-1.0); its KV read 1.0-1.5; its first
    decode step 1.5-1.6, wide. B arrives at 1.55 while A decodes: its pass runs wide, within
    the share (1.55-2.55), so A's step due at 1.6 waits for it and then runs narrow (0.15
    s): A ends at 2.7, a second later than on cores of its own. B: KV read 2.55-3.05, one
    wide step, done at 3.15."""
    a, b = two_requests()
    simulate_cluster(linear_model(narrow=NARROW), [a, b], Topology(prefill_core_share=0.5))
    assert (a.ttft_s, a.jct_s) == (pytest.approx(1.0), pytest.approx(2.7))
    assert (b.ttft_s, b.jct_s) == (pytest.approx(1.0), pytest.approx(1.6))
    alone = two_requests()
    simulate_cluster(linear_model(narrow=NARROW), alone)
    assert alone[0].jct_s == pytest.approx(1.7) and alone[1].jct_s == pytest.approx(1.6)


def test_sharing_cores_needs_narrow_costs() -> None:
    model = linear_model(narrow=None)
    with pytest.raises(ValueError, match="narrow"):
        simulate_cluster(model, list(two_requests()), Topology(prefill_core_share=0.5))
