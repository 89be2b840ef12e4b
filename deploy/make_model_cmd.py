"""`tetriserve make-model`: write a deterministic random-weight model for tests and benchmarks.

Wraps `cluster.model_factory.make_model` and reports what the directory holds, as
`cluster.checkpoint.inspect_checkpoint` sees it: the same view the serving path takes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cluster.checkpoint import CheckpointError, inspect_checkpoint
from cluster.model_factory import SHAPES, make_model, parameter_count


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "make-model",
        help="write a random-weight Llama checkpoint with LoRA adapters",
        description="Write a deterministic random-weight Llama checkpoint in Hugging Face "
        "format, with PEFT LoRA adapters of ranks 8, 16, 32 and 64 under adapters/.",
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to write")
    parser.add_argument("--size", choices=sorted(SHAPES), default="tiny", help="model size")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.set_defaults(func=run_make_model)


def run_make_model(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        model_dir = make_model(args.out, size=args.size, seed=args.seed)
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
    for adapter in sorted(info.adapters.values(), key=lambda adapter: adapter.rank):
        print(f"adapter:    {adapter.name} rank {adapter.rank} at {adapter.path}")
    print(f"ready in {time.perf_counter() - started:.1f} s")
    return 0
