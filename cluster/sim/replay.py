"""Paper replays: tetriserve against the colocated baseline on the same simulated hardware.

`tetriinfer_rows` runs each TetriInfer workload twice on one cost model, once on a
disaggregated tetriserve cluster and once on colocated vLLM-like instances (the paper's
baseline: vLLM without chunked prefill, unless told otherwise), from the same requests,
and pairs tetriserve / baseline of mean TTFT, mean JCT, resource (instance-seconds holding
requests) and perf/$ with the paper's figure (`cluster.sim.tetriinfer_paper`). This is
what `tetriserve sim tetriinfer` prints and writes with `--json`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from cluster.config import SchedulingConfig
from cluster.sim.baseline import simulate_colocated
from cluster.sim.cluster_sim import Topology, simulate_cluster
from cluster.sim.cost_model import CostModel
from cluster.sim.results import SimResult
from cluster.sim.tetriinfer_paper import METRICS, PAPER_RATIOS
from cluster.sim.workload import (
    TETRIINFER_DECODE,
    DecodeRanges,
    make_requests,
    workload_shape,
)
from cluster.workload_mix import WORKLOADS

# Called with (workload, system) as each simulation starts.
ReplayProgress = Callable[[str, str], None]


def _metric(result: SimResult, metric: str) -> float:
    return {
        "TTFT": result.ttft.mean_s,
        "JCT": result.jct.mean_s,
        "resource": result.resource_s,
        "perf/$": result.perf_per_dollar,
    }[metric]


def _ratio(ours: float, baseline: float) -> float:
    return ours / baseline if baseline > 0 else math.nan


def tetriinfer_rows(
    cost_model: CostModel,
    workloads: Sequence[str] = WORKLOADS,
    requests: int = 128,
    seed: int = 0,
    *,
    rate_per_s: float = math.inf,
    topology: Topology | None = None,
    scheduling: SchedulingConfig | None = None,
    colocated_instances: int | None = None,
    chunked_baseline: bool = False,
    decode: DecodeRanges = TETRIINFER_DECODE,
    progress: ReplayProgress | None = None,
) -> list[dict[str, object]]:
    """Rows `{"name": "LPHD TTFT", "ours", "paper", "ratio"}` for every workload and metric:
    `ours` and `paper` are tetriserve (TetriInfer) / baseline, `ratio` is ours / paper (None
    where the paper gives no figure). The baseline runs as many instances as tetriserve
    unless `colocated_instances` says otherwise; `rate_per_s` infinite sends every request
    at once (the paper states no rate)."""
    scheduling = scheduling or SchedulingConfig(
        dispatcher="power_of_two", heavy_decode_tokens=decode.heavy_threshold + 1
    )
    topology = topology or Topology()
    shape = workload_shape(cost_model.chunk_tokens, cost_model.max_model_len, decode)
    baseline_instances = colocated_instances or topology.prefill + topology.decode
    rows: list[dict[str, object]] = []
    for workload in workloads:
        if progress is not None:
            progress(workload, "tetriserve")
        ours = simulate_cluster(
            cost_model,
            make_requests(workload, requests, shape, rate_per_s, seed),
            topology,
            scheduling,
        )
        if progress is not None:
            progress(workload, "colocated")
        base = simulate_colocated(
            cost_model,
            make_requests(workload, requests, shape, rate_per_s, seed),
            baseline_instances,
            chunked_baseline,
        )
        for metric in METRICS:
            value = _ratio(_metric(ours, metric), _metric(base, metric))
            paper = PAPER_RATIOS[workload][metric]
            rows.append(
                {
                    "name": f"{workload} {metric}",
                    "ours": value,
                    "paper": paper,
                    "ratio": None if paper is None else value / paper,
                }
            )
    return rows
