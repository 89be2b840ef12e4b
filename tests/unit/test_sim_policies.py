"""The simulator runs the live system's policy objects, not copies of them.

For each policy, the simulator's object is an instance of the class in `cluster/`, and the
actor that applies it in the live system imports that same name from the same module
(read from the actor's source with ast: actors import Ray)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cluster import decode_admission, decode_dispatch, instance_flip, placement, prefill_queue
from cluster.config import SchedulingConfig
from cluster.sim.baseline import Colocated
from cluster.sim.cluster_sim import ClusterSim, Topology
from cluster.sim.cost_model import load_cost_model
from cluster.sim.instances import DecodeInstance, PrefillInstance

ROOT = Path(__file__).resolve().parents[2]
PREFILL_ACTOR = "actors/instances/prefill_instance.py"
DECODE_ACTOR = "actors/instances/decode_instance.py"
SCHEDULER_ACTOR = "actors/scheduler/global_scheduler.py"
CORE_SHARE_PLUGIN = "actors/engine/core_share.py"


def imported_names(relative: str) -> set[tuple[str, str]]:
    """(module, name) of every `from module import name` in a source file."""
    tree = ast.parse((ROOT / relative).read_text())
    return {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }


def built_cluster(dispatcher: str, admission: str) -> ClusterSim:
    scheduling = SchedulingConfig(dispatcher=dispatcher, admission=admission)
    return ClusterSim(load_cost_model("small_2cpu"), [], Topology(1, 1), scheduling)


@pytest.mark.parametrize(
    ("dispatcher", "admission"),
    [("least_work", "reserve_dynamic"), ("power_of_two", "greedy"), ("random", "reserve_static")],
)
def test_the_simulator_holds_the_live_policy_objects(dispatcher: str, admission: str) -> None:
    sim = built_cluster(dispatcher, admission)
    prefill, decode = sim.instances["prefill-0"], sim.instances["decode-0"]
    assert isinstance(prefill, PrefillInstance) and isinstance(decode, DecodeInstance)
    assert type(prefill.queue) is prefill_queue.PrefillQueue
    assert type(sim.dispatchers["prefill-0"]) is type(decode_dispatch.make_dispatcher(dispatcher))
    assert type(decode.admission) is type(decode_admission.make_admission(admission))
    assert type(sim.roles) is instance_flip.FlipController
    assert type(sim.placement) is placement.LeastLoaded
    assert type(Colocated(sim.cost, [], 1, True).placement) is placement.LeastLoaded


@pytest.mark.parametrize(
    ("actor", "module", "name"),
    [
        (PREFILL_ACTOR, "cluster.prefill_queue", "PrefillQueue"),
        (PREFILL_ACTOR, "cluster.decode_dispatch", "make_dispatcher"),
        (PREFILL_ACTOR, "cluster.length_predictor", "LengthPredictor"),
        (PREFILL_ACTOR, "cluster.decode_dispatch", "decode_need"),
        (DECODE_ACTOR, "cluster.decode_admission", "make_admission"),
        (DECODE_ACTOR, "cluster.decode_load", "DecodeProgress"),
        (DECODE_ACTOR, "cluster.decode_load", "decode_load"),
        (SCHEDULER_ACTOR, "cluster.instance_flip", "FlipController"),
        (SCHEDULER_ACTOR, "cluster.placement", "LeastLoaded"),
        (CORE_SHARE_PLUGIN, "cluster.core_sharing", "LeadBudget"),
        (CORE_SHARE_PLUGIN, "cluster.core_sharing", "LINGER_S"),
    ],
)
def test_the_live_actors_import_the_same_policies(actor: str, module: str, name: str) -> None:
    sim_sources = sorted((ROOT / "cluster" / "sim").glob("*.py"))
    sim_imports = set().union(*(imported_names(str(p.relative_to(ROOT))) for p in sim_sources))
    assert (module, name) in imported_names(actor)
    assert (module, name) in sim_imports


def test_tetriinfer_rows_name_every_workload_and_metric() -> None:
    from cluster.sim.replay import tetriinfer_rows

    rows = tetriinfer_rows(load_cost_model("opt13b_tetriinfer"), ["LPHD"], requests=16)
    assert [row["name"] for row in rows] == [
        "LPHD TTFT",
        "LPHD JCT",
        "LPHD resource",
        "LPHD perf/$",
    ]
    ttft = rows[0]
    assert ttft["paper"] == 0.03
    assert ttft["ratio"] == pytest.approx(ttft["ours"] / 0.03)
