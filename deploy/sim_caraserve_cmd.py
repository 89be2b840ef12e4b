"""`tetriserve sim caraserve`: LoRA routers compared in simulated time on profiled costs.

The cost models come from `tetriserve sim lora-profile` (the live engine's decode steps
over adapters of mixed ranks, fitted padded or unpadded, and its prefill passes). The load
is `bench lora`'s: Poisson arrivals, each request's adapter Zipf-popular over `--adapters`
adapters of `--ranks` in turn (cluster/adapter_popularity.py). Every router of
cluster/rank_routing.py places the same requests over `--instances` instances
(cluster/sim/lora_routing.py). The SLO is a time per output token of at most
`--slo-factor` times the profiled step without adapters at the largest batch profiled.
Per router: SLO attainment, mean and p99 TPOT, mean TTFT.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from cluster.adapter_popularity import DEFAULT_EXPONENT, adapter_sequence
from cluster.model_factory import ADAPTER_RANKS, AdapterSet
from cluster.rank_routing import (
    DecodeCostModel,
    FirstFit,
    LeastLoadedLora,
    LoraRouter,
    PrefillCostModel,
    RandomLora,
    RankAware,
)
from cluster.sim.lora_routing import poisson_requests, simulate
from deploy.bench_args import positive
from deploy.make_model_cmd import rank_list


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "caraserve",
        help="LoRA routers (rank-aware, least-loaded, random, first-fit) in simulated time",
        description="Place the same Zipf-popular LoRA requests over several instances with "
        "each router, on cost models profiled from the live engine, and print SLO attainment "
        "and time per output token per router.",
    )
    parser.add_argument(
        "--cost-model", type=Path, required=True, metavar="PATH", help="sim lora-profile JSON"
    )
    parser.add_argument("--padding", choices=["padded", "unpadded"], default="padded")
    parser.add_argument("--instances", type=positive, default=2)
    parser.add_argument("--adapters", type=positive, default=200)
    parser.add_argument("--ranks", type=rank_list, default=ADAPTER_RANKS)
    parser.add_argument("--requests", type=positive, default=2000)
    parser.add_argument("--rate", type=float, default=20.0, help="arrivals per second, in all")
    parser.add_argument("--zipf", type=float, default=DEFAULT_EXPONENT)
    parser.add_argument("--input-len", type=positive, default=128)
    parser.add_argument("--output-len", type=positive, default=64)
    parser.add_argument("--slo-factor", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    profile = json.loads(args.cost_model.read_text())
    fit = profile[args.padding]
    decode = DecodeCostModel(args.padding, fit["per_unit_s"], fit["base_s"])
    prefill = PrefillCostModel(profile["prefill"]["per_token_s"], profile["prefill"]["base_s"])
    no_lora = profile["no_lora_step_s"]
    slo_s = args.slo_factor * no_lora[max(no_lora, key=int)]
    rank_of = dict(AdapterSet(count=args.adapters, ranks=tuple(args.ranks)).named())
    sequence = adapter_sequence(sorted(rank_of), args.requests, args.zipf, args.seed)
    requests = poisson_requests(
        [rank_of[name] for name in sequence], args.rate, args.input_len, args.output_len, args.seed
    )
    routers: dict[str, LoraRouter] = {
        "rank_aware": RankAware(decode, prefill, slo_s, args.output_len),
        "least_loaded": LeastLoadedLora(),
        "random": RandomLora(args.seed),
        "first_fit": FirstFit(decode, slo_s),
    }
    print(
        f"{args.requests} requests at {args.rate}/s over {args.instances} instances; "
        f"decode {args.padding} (R² {fit['r2']:.3f}); SLO: TPOT <= {slo_s * 1e3:.2f} ms"
    )
    print("| router | SLO attainment | mean TPOT ms | p99 TPOT ms | mean TTFT ms |")
    print("|---|---:|---:|---:|---:|")
    rows: dict[str, dict[str, Any]] = {}
    for name, router in routers.items():
        result = simulate(requests, args.instances, router, decode, prefill)
        tpots = np.array(result.tpots_s) * 1e3
        rows[name] = {
            "slo_attainment": result.slo_attainment(slo_s),
            "mean_tpot_ms": float(tpots.mean()),
            "p99_tpot_ms": float(np.percentile(tpots, 99)),
            "mean_ttft_ms": float(np.mean(result.ttfts_s) * 1e3),
        }
        row = rows[name]
        print(
            f"| {name} | {row['slo_attainment']:.1%} | {row['mean_tpot_ms']:.2f} | "
            f"{row['p99_tpot_ms']:.2f} | {row['mean_ttft_ms']:.1f} |"
        )
    if args.json is not None:
        payload = {"slo_tpot_ms": slo_s * 1e3, "decode_fit_r2": fit["r2"], "routers": rows}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0
