"""`tetriserve sim scale`: one large simulated cluster, as a benchmark of the simulator.

Runs `cluster.sim.cluster_sim.simulate_cluster` (no Ray, no vLLM) over one workload's
Poisson arrivals on `--prefill` + `--decode` instances with the default scheduling
(`SchedulingConfig`: its dispatcher, admission and flips; the heavy-decode threshold is the
workload's), with a progress bar over requests finished. It prints the wall and CPU seconds
the simulation took, its events, requests simulated per second, mean, p50 and p99 TTFT and
JCT, and flips; `--json PATH` writes those figures, `--out DIR` plots ttft_cdf.png,
jct_cdf.png and utilisation.png.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cluster.config import SchedulingConfig
from cluster.sim.cluster_sim import ClusterSim, Topology
from cluster.sim.cost_model import CostModel
from cluster.sim.results import SimResult
from cluster.sim.workload import TETRIINFER_DECODE, SimRequest, make_requests, workload_shape
from cluster.workload_mix import WORKLOADS
from deploy.bench_args import positive
from deploy.sim_cmd import add_cost_model_arg, positive_rate

# Requests per second per decode instance the default rate offers: loaded, not overloaded.
# On the OPT-13B TetriInfer cost model, 50 + 50 instances, 20,000 Mixed requests: mean JCT
# 5.1 s at 2/s per decode instance, 5.6 s at 3, 6.0 s at 3.4, and 23 s at 4.4 (the queue
# grows without end).
DEFAULT_RATE_PER_DECODE = 3.0
Figures = dict[str, Any]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "scale",
        help="simulate one large cluster; time the simulator, plot latency CDFs",
        description="Simulate PREFILL + DECODE tetriserve instances serving REQUESTS "
        "requests of one workload with the default scheduling; print how long the "
        "simulation took and the latencies it found.",
    )
    parser.add_argument("--prefill", type=positive, default=500, help="(default: 500)")
    parser.add_argument("--decode", type=positive, default=500, help="(default: 500)")
    parser.add_argument("--requests", type=positive, default=1_000_000, help="(default: 1000000)")
    parser.add_argument(
        "--rate",
        type=positive_rate,
        default=None,
        metavar="R",
        help=f"Poisson arrivals per second (default: {DEFAULT_RATE_PER_DECODE:g} x DECODE)",
    )
    parser.add_argument("--workload", choices=WORKLOADS, default="Mixed", help="(default: Mixed)")
    add_cost_model_arg(parser)
    parser.add_argument("--seed", type=int, default=0, help="of the requests (default: 0)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="the figures")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="writes ttft_cdf.png, jct_cdf.png and utilisation.png",
    )
    parser.set_defaults(func=run_scale)


def run_scale(args: argparse.Namespace) -> int:
    rate = args.rate or DEFAULT_RATE_PER_DECODE * args.decode
    requests = scale_requests(args.cost_model, args.workload, args.requests, rate, args.seed)
    scheduling = SchedulingConfig(heavy_decode_tokens=TETRIINFER_DECODE.heavy_threshold + 1)
    bar = tqdm(total=len(requests), unit="req", smoothing=0.05)
    sim = ClusterSim(
        args.cost_model,
        requests,
        Topology(args.prefill, args.decode),
        scheduling,
        progress=lambda finished, _: bar.update(finished - bar.n),
    )
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        result = sim.run()
    finally:
        bar.close()
    timing = {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "events": sim.events.events_run,
    }
    figures = scale_figures(args, rate, result, timing)
    print(report(figures))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if args.out is not None:
        plot_all(requests, result, args.out)
    return 0


def scale_requests(
    cost: CostModel, workload: str, count: int, rate: float, seed: int
) -> list[SimRequest]:
    shape = workload_shape(cost.chunk_tokens, cost.max_model_len, TETRIINFER_DECODE)
    return make_requests(workload, count, shape, rate, seed)


def scale_figures(
    args: argparse.Namespace, rate: float, result: SimResult, timing: Figures
) -> Figures:
    """What `--json` writes: the setting, how long the simulation took, what it found."""
    return {
        "prefill": args.prefill,
        "decode": args.decode,
        "requests": result.requests,
        "finished": result.finished,
        "rate_per_s": rate,
        "workload": args.workload,
        "cost_model": args.cost_model.name,
        "seed": args.seed,
        **timing,
        "requests_per_s": result.requests / timing["wall_s"] if timing["wall_s"] > 0 else None,
        "makespan_s": result.makespan_s,
        "ttft_s": _latency(result.ttft),
        "jct_s": _latency(result.jct),
        "mean_utilisation": _mean(usage.utilisation for usage in result.instances),
        "flips": result.flips,
    }


def _latency(latency: Any) -> Figures:
    return {"mean": latency.mean_s, "p50": latency.p50_s, "p99": latency.p99_s}


def _mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def report(figures: Figures) -> str:
    ttft, jct = figures["ttft_s"], figures["jct_s"]
    return "\n".join(
        [
            f"{figures['prefill']} prefill + {figures['decode']} decode instances, "
            f"{figures['requests']:,} {figures['workload']} requests at "
            f"{figures['rate_per_s']:g}/s on {figures['cost_model']}: "
            f"{figures['finished']:,} finished in {figures['makespan_s']:,.1f} simulated s",
            f"simulation: {figures['wall_s']:,.1f} s wall, {figures['cpu_s']:,.1f} s CPU, "
            f"{figures['events']:,} events, {figures['requests_per_s']:,.0f} requests/s",
            f"TTFT  mean {ttft['mean']:.3f} s  p50 {ttft['p50']:.3f} s  p99 {ttft['p99']:.3f} s",
            f"JCT   mean {jct['mean']:.3f} s  p50 {jct['p50']:.3f} s  p99 {jct['p99']:.3f} s",
            f"mean utilisation {figures['mean_utilisation']:.3f}, flips {figures['flips']}",
        ]
    )


def plot_all(requests: Sequence[SimRequest], result: SimResult, out_dir: Path) -> list[Path]:
    """ttft_cdf.png, jct_cdf.png and utilisation.png in `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    done = [r for r in requests if not math.isnan(r.finished_s)]
    return [
        _plot_cdf([r.ttft_s for r in done], "TTFT (s)", out_dir / "ttft_cdf.png"),
        _plot_cdf([r.jct_s for r in done], "JCT (s)", out_dir / "jct_cdf.png"),
        _plot_utilisation(result, out_dir / "utilisation.png"),
    ]


def _plot_cdf(values: Sequence[float], label: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    ordered = sorted(values)
    fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ordered, fractions)
    ax.set_xlabel(label)
    ax.set_ylabel("fraction of requests")
    ax.set_title(f"{label[:-4]} CDF over {len(ordered):,} requests", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _plot_utilisation(result: SimResult, path: Path) -> Path:
    """Each instance's engine utilisation, sorted, one curve per role (at the run's end)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for role in sorted({usage.role for usage in result.instances}):
        shares = sorted((u.utilisation for u in result.instances if u.role == role), reverse=True)
        ax.plot(range(1, len(shares) + 1), shares, label=f"{role} ({len(shares)})")
    ax.set_xlabel("instance, busiest first")
    ax.set_ylabel("utilisation (engine seconds / makespan)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
