"""`tetriserve sim lora-profile`: fit the rank-aware router's cost models on the live engine.

One engine on all of this node's cores (actors/instances/step_profiler.py), on a local Ray
cluster (or `RAY_ADDRESS`'s), with the model's own adapters (one per rank). Decode steps
are timed over batches of each size, with every sequence on a rank-8 adapter, every one on
rank 64, the ranks mixed, and no adapter; the LoRA steps are fitted both ways
(cluster/rank_routing.py: padded `a * |batch| * max_rank + b`, unpadded `a * sum(rank) +
b`), with R². Prefill passes at the ChunkSize probe sizes give the prefill model
(`a * tokens + b`). The JSON holds the fits, the samples and the no-LoRA step per batch.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cluster.checkpoint import inspect_checkpoint
from cluster.chunking import probe_sizes
from cluster.config import EngineConfig
from cluster.model_factory import ensure_model
from cluster.rank_routing import fit_decode_model
from deploy.bench_args import positive
from deploy.local_ray import init_ray
from deploy.make_model_cmd import rank_list

NAMESPACE = "tetriserve-sim-lora-profile"
DECODE_STEPS = 12


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lora-profile",
        help="fit the rank-aware router's decode and prefill cost models on the live engine",
        description="Time decode steps over batches of LoRA adapters of mixed ranks on this "
        "node's cores, fit the padded and unpadded cost models with their R², and write "
        "them as JSON.",
    )
    parser.add_argument("--size", choices=["tiny", "small"], default="small", help="model")
    parser.add_argument("--out", type=Path, required=True, metavar="PATH", help="JSON to write")
    parser.add_argument("--batches", type=rank_list, default=(1, 2, 4, 8), help="batch sizes")
    parser.add_argument("--context", type=positive, default=128, help="prompt tokens")
    parser.set_defaults(func=run)


def rank_mixes(batch: int, ranks: list[int]) -> dict[str, tuple[int, ...]]:
    """The batches a LoRA probe times at one size: lowest rank, highest rank, mixed, none."""
    mixed = tuple(itertools.islice(itertools.cycle(ranks), batch))
    return {
        f"r{ranks[0]}": (ranks[0],) * batch,
        f"r{ranks[-1]}": (ranks[-1],) * batch,
        "mixed": mixed,
        "none": (0,) * batch,
    }


def run(args: argparse.Namespace) -> int:
    import ray

    from actors.instances.step_profiler import StepProfiler
    from actors.model_shipping import hold_here

    checkpoint = inspect_checkpoint(ensure_model(args.size))
    cores = os.cpu_count() or 1
    config = EngineConfig(
        model_dir=checkpoint.model_dir,
        max_model_len=min(1024, checkpoint.max_model_len),
        max_num_seqs=max(args.batches),
        max_lora_rank=max(checkpoint.max_adapter_rank, 8),
        cpu_cores=f"0-{cores - 1}",
    )
    init_ray(address=os.environ.get("RAY_ADDRESS"), namespace=NAMESPACE, log_to_driver=False)
    profiler = ray.remote(StepProfiler).remote(
        config, checkpoint.vocab_size, hold_here(checkpoint.model_dir)
    )
    try:
        ranks = ray.get(profiler.adapter_ranks.remote())
        samples, prefill = _measure(args, profiler, ranks, probe_sizes(config.max_model_len - 1))
    finally:
        ray.get(profiler.shutdown.remote())
        ray.kill(profiler)
    payload = _fits(samples, prefill)
    payload["source"] = f"{checkpoint.model_dir.name}, one vLLM engine on CPU cores 0-{cores - 1}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    for name in ("padded", "unpadded"):
        fit = payload[name]
        print(
            f"{name}: step = {fit['per_unit_s'] * 1e6:.2f} us x units + "
            f"{fit['base_s'] * 1e3:.2f} ms, R² {fit['r2']:.3f}"
        )
    print(f"prefill: {payload['prefill']['per_token_s'] * 1e6:.1f} us/token, wrote {args.out}")
    return 0


def _measure(
    args: argparse.Namespace, profiler: Any, ranks: list[int], sizes: list[int]
) -> tuple[list[dict[str, Any]], list[tuple[int, float]]]:
    import ray

    probes = [(b, mix) for b in args.batches for mix in rank_mixes(b, ranks).items()]
    samples = []
    with tqdm(total=len(probes) + len(sizes), desc="lora-profile", unit="probe") as bar:
        ray.get(profiler.decode_step.remote(1, args.context, 2, (ranks[-1],)))  # warm-up
        for batch, (mix, batch_ranks) in probes:
            seconds, _ = ray.get(
                profiler.decode_step.remote(batch, args.context, DECODE_STEPS, batch_ranks)
            )
            samples.append(
                {"batch": batch, "mix": mix, "ranks": list(batch_ranks), "step_s": seconds}
            )
            bar.update()
        prefill = []
        for tokens in sizes:
            prefill.append((tokens, ray.get(profiler.prefill_seconds.remote(tokens))))
            bar.update()
    return samples, prefill


def _fits(samples: list[dict[str, Any]], prefill: list[tuple[int, float]]) -> dict[str, Any]:
    lora = [(s["ranks"], s["step_s"]) for s in samples if s["mix"] != "none"]
    fits = {}
    for padding in ("padded", "unpadded"):
        model, r2 = fit_decode_model(lora, padding)
        fits[padding] = {"per_unit_s": model.per_unit_s, "base_s": model.base_s, "r2": r2}
    tokens = np.array([t for t, _ in prefill], dtype=float)
    seconds = np.array([s for _, s in prefill], dtype=float)
    per_token, base = np.polyfit(tokens, seconds, 1)
    return {
        **fits,
        "prefill": {"per_token_s": float(per_token), "base_s": float(base)},
        "no_lora_step_s": {str(s["batch"]): s["step_s"] for s in samples if s["mix"] == "none"},
        "samples": samples,
        "prefill_samples": [{"tokens": t, "seconds": s} for t, s in prefill],
    }
