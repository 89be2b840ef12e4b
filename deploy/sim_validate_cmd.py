"""`tetriserve sim validate`: the simulator's figures against the live deployment's.

It serves each chosen workload (LPHD and HPLD by default) on tetriserve's deployment here,
as `bench workloads` does (warm-up, then Poisson arrivals, vLLM's benchmark client), then
replays the very requests the client sent in the simulator (`cluster.sim.validate`): the
same arrivals and lengths, the same scheduling policies, the deployment's topology (one
prefill and one decode instance sharing the node's cores, unless `--no-share-cores`), on a
cost model profiled on this machine (`--cost-model`, default small_2cpu). It prints mean
and p99 TTFT and JCT, live and simulated, with the error; `--json PATH` writes
`[{"workload", "metric", "live", "sim", "error"}]`. `--live DIR` compares with the
tetriserve runs of an earlier `bench workloads --out DIR` (or `sim validate --out DIR`)
instead of serving the workloads again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cluster.sim.cluster_sim import Topology, simulate_cluster
from cluster.sim.cost_model import CostModel
from cluster.sim.validate import requests_from_client, validation_rows
from deploy.bench_workloads import add_run_args, result_path, run_tetriserve, start_bench
from deploy.serve_cmd import scheduling_from_args
from deploy.sim_cmd import add_cost_model_arg

DEFAULT_WORKLOADS = ("LPHD", "HPLD")
SYSTEM = "tetriserve"  # whose client results are replayed
Row = dict[str, Any]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="the simulator against the live deployment, on the same requests",
        description="Serve workloads on tetriserve here, replay the same requests in the "
        "simulator on a cost model profiled here, and print mean and p99 TTFT and JCT of "
        "both with the error.",
    )
    add_run_args(parser, default_workloads=DEFAULT_WORKLOADS)
    add_cost_model_arg(parser, default="small_2cpu")
    parser.add_argument(
        "--live",
        type=Path,
        default=None,
        metavar="DIR",
        help="compare with the tetriserve runs of an earlier `bench workloads --out DIR` "
        "instead of serving the workloads now",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="the rows")
    parser.set_defaults(func=run)


def serve_live(args: argparse.Namespace) -> tuple[Path, int]:
    """Serves the workloads on tetriserve; the output directory and the ChunkSize used."""
    bench = start_bench(args, "sim-validate")
    with tqdm(total=len(bench.requests), unit="run", file=sys.stdout) as progress:
        run_tetriserve(bench, progress)
    return bench.work, bench.chunk_tokens


def compare(args: argparse.Namespace, work: Path, cost: CostModel, names: list[str]) -> list[Row]:
    """Each workload's client result in `work`, replayed in the simulator."""
    share = None if args.no_share_cores else args.prefill_core_share
    topology = Topology(prefill_core_share=share)
    scheduling = scheduling_from_args(args)
    rows: list[Row] = []
    for name in names:
        path = result_path(work, SYSTEM, name)
        if not path.exists():
            raise SystemExit(f"no {SYSTEM} run of {name} in {work} ({path} is missing)")
        result = json.loads(path.read_text())
        requests = requests_from_client(result)
        simulate_cluster(cost, requests, topology, scheduling)
        rows.extend(validation_rows(name, result, requests))
    return rows


def to_table(rows: list[Row]) -> str:
    lines = [
        "| workload | metric | live (s) | sim (s) | error |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['workload']} | {r['metric']} | {r['live']:.2f} | {r['sim']:.2f} | "
        f"{r['error']:+.0%} |"
        for r in rows
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    cost: CostModel = args.cost_model
    if args.live is not None:
        work = args.live
    else:
        work, chunk_tokens = serve_live(args)
        cost = dataclasses.replace(cost, chunk_tokens=chunk_tokens)
    print(f"cost model {cost.name}, ChunkSize {cost.chunk_tokens}; live runs in {work}")
    rows = compare(args, work, cost, args.workloads)
    print(to_table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    return 0
