"""`tetriserve make-model`: write a deterministic random-weight model for tests and benchmarks.

Wraps `cluster.model_factory.make_model` and reports what the directory holds, as
`cluster.checkpoint.inspect_checkpoint` sees it: the same view the serving path takes.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from cluster.checkpoint import CheckpointError, inspect_checkpoint
from cluster.model_factory import ADAPTER_RANKS, SHAPES, AdapterSet, make_model, parameter_count

# More adapters than this are summed up by rank rather than listed.
MAX_ADAPTERS_LISTED = 8


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def rank_list(text: str) -> tuple[int, ...]:
    """ "8,16,32,64" -> (8, 16, 32, 64); every rank a positive integer."""
    try:
        ranks = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of ranks: {text!r}") from None
    if min(ranks) < 1:
        raise argparse.ArgumentTypeError(f"ranks must be positive: {text!r}")
    return ranks


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "make-model",
        help="write a random-weight Llama checkpoint with LoRA adapters",
        description="Write a deterministic random-weight Llama checkpoint in Hugging Face "
        "format, with PEFT LoRA adapters under adapters/: one of each rank (r8, r16, r32, "
        "r64), or --adapters N of them (a000-r8, a001-r16, ...), the ranks taken in turn.",
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to write")
    parser.add_argument("--size", choices=sorted(SHAPES), default="tiny", help="model size")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument(
        "--adapters",
        type=non_negative,
        default=None,
        metavar="N",
        help="how many adapters to write (default: one per rank)",
    )
    parser.add_argument(
        "--ranks",
        type=rank_list,
        default=ADAPTER_RANKS,
        metavar="R,R,...",
        help="adapter ranks, taken in turn (default: 8,16,32,64)",
    )
    parser.set_defaults(func=run_make_model)


def run_make_model(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        wanted = AdapterSet(args.adapters, args.ranks)
        model_dir = make_model(args.out, size=args.size, seed=args.seed, adapters=wanted)
        info = inspect_checkpoint(model_dir)
    except (FileExistsError, CheckpointError) as error:
        print(f"make-model: {error}")
        return 1
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    print(f"model:      {model_dir} ({args.size}, seed {args.seed})")
    print(f"parameters: {parameter_count(config):,}")
    print(
        f"shape:      {info.num_layers} layers, hidden {info.hidden_size}, "
        f"{info.num_heads} heads / {info.num_kv_heads} KV heads of dim {info.head_dim}, "
        f"vocab {info.vocab_size}, context {info.max_model_len}"
    )
    adapters = sorted(info.adapters.values(), key=lambda adapter: (adapter.rank, adapter.name))
    if len(adapters) > MAX_ADAPTERS_LISTED:
        ranks = Counter(adapter.rank for adapter in adapters)
        by_rank = ", ".join(f"{count} of rank {rank}" for rank, count in sorted(ranks.items()))
        print(f"adapters:   {len(adapters)} under {model_dir / 'adapters'} ({by_rank})")
    else:
        for adapter in adapters:
            print(f"adapter:    {adapter.name} rank {adapter.rank} at {adapter.path}")
    print(f"ready in {time.perf_counter() - started:.1f} s")
    return 0
