"""`tetriserve sim profile`: measure the live engine and write a cost model for the simulator.

One engine on all of this node's cores (actors/instances/step_profiler.py), on a local Ray
cluster (or `RAY_ADDRESS`'s): the prefill pass at each ChunkSize probe size, and the decode
step at each batch size and context length asked for; the decode step is fitted to a line
in the batch and its context tokens (`cluster.sim.cost_model.fit_decode_step`, with its
R²). A KV page's read from a memory node on one machine is priced as one copy of its bytes
in this process and its setup as one Ray round trip, both measured here. The file says all
of that in its `source`, and `tetriserve sim tetriinfer --cost-model PATH` runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cluster.checkpoint import inspect_checkpoint
from cluster.chunking import probe_sizes
from cluster.config import EngineConfig
from cluster.model_factory import ensure_model
from cluster.sim.cost_model import (
    CostModel,
    DecodeSample,
    KVTransfer,
    PassTable,
    cost_model_to_dict,
    fit_decode_step,
)
from deploy.bench_args import positive
from deploy.local_ray import init_ray
from deploy.make_model_cmd import rank_list

NAMESPACE = "tetriserve-sim-profile"
ROUND_TRIPS = 20
COPIES = 20
DECODE_STEPS = 12  # decode steps timed per probe, all sequences decoding


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="measure the live engine and write a cost model for the simulator",
        description="Time the live engine's prefill passes and decode steps on this node's "
        "cores and write them as a cost-model JSON file for `tetriserve sim`.",
    )
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--model", type=Path, default=None, metavar="DIR", help="model directory")
    model.add_argument("--size", choices=["tiny", "small"], default="small", help="built-in model")
    parser.add_argument("--out", type=Path, required=True, metavar="PATH", help="JSON to write")
    parser.add_argument(
        "--batches", type=rank_list, default=(1, 4, 16, 32), help="decode batch sizes"
    )
    parser.add_argument(
        "--contexts", type=rank_list, default=(64, 512), help="decode context lengths (tokens)"
    )
    parser.add_argument(
        "--max-model-len",
        type=positive,
        default=None,
        help="the engine's context (default: the model's); the simulator's workloads need room "
        "for a prompt over ChunkSize and the longest output",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import ray

    from actors.instances.chunk_profiler import REPEATS
    from actors.instances.step_profiler import StepProfiler, probe_tokens
    from actors.model_shipping import hold_here

    model_dir = args.model if args.model is not None else ensure_model(args.size)
    checkpoint = inspect_checkpoint(model_dir)
    max_model_len = min(args.max_model_len or checkpoint.max_model_len, checkpoint.max_model_len)
    longest = max(args.contexts) + probe_tokens(
        max(args.batches), max(args.contexts), DECODE_STEPS, max(probe_sizes(max_model_len - 1))
    )
    if longest > max_model_len:
        raise SystemExit(
            f"sim profile: a decode probe of {max(args.batches)} prompts of "
            f"{max(args.contexts)} tokens runs to {longest} tokens, which do not fit in "
            f"{max_model_len} (--max-model-len)"
        )
    cores = os.cpu_count() or 1
    config = EngineConfig(
        model_dir=checkpoint.model_dir,
        max_model_len=max_model_len,
        max_num_seqs=max(args.batches),
        max_lora_rank=max(checkpoint.max_adapter_rank, 8),
        cpu_cores=f"0-{cores - 1}",
    )
    address = os.environ.get("RAY_ADDRESS")
    init_ray(address=address, namespace=NAMESPACE, log_to_driver=False, ignore_reinit_error=True)
    profiler = ray.remote(StepProfiler).remote(
        config, checkpoint.vocab_size, hold_here(checkpoint.model_dir)
    )
    try:
        measured = _measure(args, config, profiler, REPEATS)
    finally:
        ray.get(profiler.shutdown.remote())
        ray.kill(profiler)
    page_bytes = config.block_size * _kv_bytes_per_token(checkpoint)
    model, r2 = measured.cost_model(args.out.stem, config, page_bytes)
    device = f"{cores} CPU cores ({platform.processor() or platform.machine()})"
    payload = cost_model_to_dict(model, device=device, decode_fit_r2=r2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(_summary(model, r2, args.out))
    return 0


@dataclass(frozen=True, slots=True)
class _Measured:
    prefill: PassTable
    decode: list[DecodeSample]
    kv_capacity_tokens: int
    round_trip_s: float
    repeats: int  # prefill passes timed at each size

    def cost_model(
        self, name: str, config: EngineConfig, page_bytes: int
    ) -> tuple[CostModel, float]:
        """The cost model, and its decode fit's R²."""
        step, r2 = fit_decode_step(self.decode)
        copy_s = _copy_s(page_bytes)
        source = (
            f"measured by `tetriserve sim profile` on {time.strftime('%Y-%m-%d')}: "
            f"{config.model_dir.name}, one vLLM engine on CPU cores {config.cpu_cores}, "
            f"float32, block size {config.block_size}, eager. prefill: the median of "
            f"{self.repeats} passes at each size. decode: the median seconds per token of "
            f"batches of {sorted({s.batch for s in self.decode})} greedy sequences of "
            f"{sorted({s.context_tokens for s in self.decode})} context tokens, "
            f"fitted to base + per sequence + per context token (R² {r2:.3f}). kv_transfer: "
            f"setup one Ray round trip ({self.round_trip_s * 1e3:.2f} ms), per page one copy "
            f"of its {page_bytes:,} bytes in one process ({copy_s * 1e3:.3f} ms). Not "
            f"measured: passes on one core of a shared pair (no `narrow`)."
        )
        return CostModel(
            name=name,
            source=source,
            prefill=self.prefill,
            decode=step,
            kv_transfer=KVTransfer(config.block_size, self.round_trip_s, copy_s),
            kv_capacity_tokens=self.kv_capacity_tokens,
            max_num_seqs=config.max_num_seqs,
            max_model_len=config.max_model_len,
            chunk_tokens=self.prefill.knee(),
        ), r2


def _measure(
    args: argparse.Namespace, config: EngineConfig, profiler: Any, repeats: int
) -> _Measured:
    """Every probe, one after another, with a progress bar."""
    import ray

    sizes = probe_sizes(config.max_model_len - 1)
    probes = len(sizes) + len(args.batches) * len(args.contexts)
    prefill: list[float] = []
    decode: list[DecodeSample] = []
    with tqdm(total=probes, desc="profile", unit="probe") as bar:
        ray.get(profiler.prefill_seconds.remote(sizes[0]))  # warm-up
        for tokens in sizes:
            prefill.append(ray.get(profiler.prefill_seconds.remote(tokens)))
            bar.update()
        for context in args.contexts:
            for batch in args.batches:
                probe = profiler.decode_step.remote(batch, context, DECODE_STEPS)
                seconds, held = ray.get(probe)
                decode.append(DecodeSample(batch, round(held), seconds))
                bar.update()
    return _Measured(
        prefill=PassTable(tuple(sizes), tuple(prefill)),
        decode=decode,
        kv_capacity_tokens=ray.get(profiler.kv_capacity_tokens.remote()),
        round_trip_s=_round_trip_s(profiler),
        repeats=repeats,
    )


def _kv_bytes_per_token(checkpoint: Any) -> int:
    """Keys and values of every layer, float32 (CPU engines)."""
    return checkpoint.num_layers * 2 * checkpoint.num_kv_heads * checkpoint.head_dim * 4


def _round_trip_s(profiler: Any) -> float:
    import ray

    timings = []
    for _ in range(ROUND_TRIPS):
        started = time.perf_counter()
        ray.get(profiler.ping.remote())
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def _copy_s(page_bytes: int) -> float:
    source = np.ones(page_bytes, dtype=np.uint8)
    target = np.empty_like(source)
    timings = []
    for _ in range(COPIES):
        started = time.perf_counter()
        np.copyto(target, source)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def _summary(model: CostModel, r2: float, path: Path) -> str:
    decode = model.decode
    rows = [
        f"wrote {path}",
        f"prefill: {len(model.prefill.tokens)} sizes, ChunkSize (knee) {model.chunk_tokens}; "
        + ", ".join(
            f"{t} tokens {s * 1e3:.1f} ms"
            for t, s in zip(model.prefill.tokens, model.prefill.seconds, strict=True)
        ),
        f"decode step: {decode.base_s * 1e3:.2f} ms + {decode.per_sequence_s * 1e3:.3f} ms per "
        f"sequence + {decode.per_context_token_s * 1e6:.3f} us per context token (R² {r2:.3f})",
        f"KV: {model.kv_capacity_tokens:,} tokens of cache; a page "
        f"{model.kv_transfer.per_page_s * 1e3:.3f} ms + {model.kv_transfer.setup_s * 1e3:.2f} ms "
        "per transfer",
    ]
    return "\n".join(rows)
