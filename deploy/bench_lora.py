"""`tetriserve bench lora`: many LoRA adapters loaded at run time, tetriserve against vLLM.

Runs as a Ray job (`ray job submit -- tetriserve bench lora ...`) or directly (it starts a
local Ray). On the same cores, one after the other:

1. tetriserve, its default deployment on the cluster's Serve, under its own route;
2. plain `vllm serve` with dynamic LoRA (`VLLM_ALLOW_RUNTIME_LORA_UPDATING`), on both cores,
   with the engine settings of tetriserve's engines: max_loras 4, max_cpu_loras left at
   vLLM's default (= max_loras) and the same maximum rank.

The adapters, `--adapters N` of ranks `--ranks` in turn, are written by make-model beside
the base model (the same base weights) and loaded into each system through its own
`/v1/load_lora_adapter`. Each system then serves a warm-up, a run without adapters and the
LoRA run, each driven by vLLM's benchmark client: random prompts of `--input-len` tokens,
`--output-len` tokens out, Poisson arrivals at `--rate`; in the LoRA run each request's
adapter is Zipf-popular (cluster/adapter_popularity.py), the same sequence for both systems.
The SLO is a TPOT of at most `--slo-factor` times plain vLLM's TPOT without adapters in
this run. Cold starts are the loads of adapter weights by the engines' workers during the
LoRA run (actors/engine/lora_load_log.py; counted on this node's engines).
Writes results.json, table.md and lora.png to the output directory; `--json PATH` writes
`{"tetriserve", "vllm", "ratio"}`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from actors.engine import lora_load_log
from cluster.adapter_popularity import DEFAULT_EXPONENT, adapter_sequence
from cluster.config import DeploymentConfig
from cluster.model_factory import (
    ADAPTER_RANKS,
    AdapterSet,
    ensure_model,
    make_model,
    tetriserve_home,
)
from cluster.request import BASE_MODEL_NAME
from deploy import bench_lora_report as report
from deploy.bench_args import add_model_args, positive, sampling_args
from deploy.bench_latency import drive
from deploy.bench_servers import running
from deploy.bench_workloads import NAMESPACE, vllm_on_both_cores
from deploy.local_ray import init_ray
from deploy.make_model_cmd import rank_list

APP_NAME = "tetriserve-bench-lora"
WARMUP_REQUESTS = 8


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lora",
        help="many adapters loaded at run time, Zipf-popular: tetriserve against vLLM",
        description="Load the same adapters into tetriserve and into plain vLLM with dynamic "
        "LoRA, serve the same Zipf-popular adapter mix to each, and print TTFT, time per "
        "output token, SLO attainment and cold starts, with the ratios.",
    )
    add_model_args(parser, model_dirs=False)  # the adapters are made for a built-in model
    parser.add_argument("--adapters", type=positive, default=200, help="adapters loaded")
    parser.add_argument(
        "--ranks", type=rank_list, default=ADAPTER_RANKS, help="their ranks, in turn"
    )
    parser.add_argument("--requests", type=positive, default=100, help="requests in the run")
    parser.add_argument("--rate", type=float, default=2.0, help="Poisson arrivals per second")
    parser.add_argument(
        "--zipf", type=float, default=DEFAULT_EXPONENT, help="popularity exponent s (1/k**s)"
    )
    parser.add_argument("--input-len", type=positive, default=128, help="prompt tokens")
    parser.add_argument("--output-len", type=positive, default=64, help="output tokens")
    parser.add_argument(
        "--slo-factor", type=float, default=1.5, help="SLO: TPOT <= this x vLLM's without LoRA"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serve-port", type=int, default=8000, help="Serve's HTTP port")
    parser.add_argument("--out", type=Path, default=None, help="output directory")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="figures")
    parser.set_defaults(func=run)


@dataclass(frozen=True, slots=True)
class LoraBench:
    """One run: the models, the adapter sequence and where everything is written."""

    args: argparse.Namespace
    model_dir: Path
    lora_root: Path
    adapter_names: list[str]
    sequence: list[str]
    work: Path

    @property
    def max_model_len(self) -> int:
        return self.args.input_len + self.args.output_len + 64

    @property
    def load_log(self) -> Path:
        return self.work / "lora_loads.jsonl"

    def client_args(self, base_url: str, name: str, adapters: list[str] | None) -> list[str]:
        args = self.args
        count = WARMUP_REQUESTS if name == "warmup" else args.requests
        lora = ["--lora-modules", *adapters, "--lora-assignment", "round-robin"] if adapters else []
        return [
            "--backend", "openai", "--base-url", base_url, "--endpoint", "/v1/completions",
            "--model", BASE_MODEL_NAME, "--tokenizer", str(self.model_dir),
            "--dataset-name", "random", "--random-input-len", str(args.input_len),
            "--random-output-len", str(args.output_len), "--num-prompts", str(count),
            "--request-rate", str(args.rate), "--burstiness", "1.0", "--ignore-eos",
            *sampling_args(args), *lora, "--seed", str(args.seed),
            "--save-detailed", "--save-result", "--result-dir", str(self.work / "results"),
            "--result-filename", f"{name}.json", "--disable-tqdm",
        ]  # fmt: skip

    def serve(
        self, system: str, base_url: str, model_of: Callable[[str], str], progress: tqdm
    ) -> dict[str, Any]:
        """Loads every adapter, then the warm-up, the run without adapters and the LoRA run;
        the client's results and the LoRA run's cold starts."""
        progress.set_description(f"{system}: loading {len(self.adapter_names)} adapters")
        for name in self.adapter_names:
            _load_adapter(base_url, name, self.lora_root / name)
        progress.update(1)
        log = self.work / "logs" / "client.log"
        progress.set_description(f"{system}: warm-up and without adapters")
        drive(self.client_args(base_url, f"{system}-warmup", None), log)
        no_lora = drive(self.client_args(base_url, f"{system}-no-lora", None), log)
        progress.update(1)
        progress.set_description(f"{system}: LoRA run")
        started = time.time()
        adapters = [model_of(name) for name in self.sequence]
        lora = drive(self.client_args(base_url, f"{system}-lora", adapters), log)
        loads = lora_load_log.loads_between(self.load_log, started, time.time())
        progress.update(1)
        return {"no_lora": no_lora, "lora": lora, "loads": loads}


def _load_adapter(base_url: str, name: str, path: Path) -> None:
    answer = httpx.post(
        f"{base_url}/v1/load_lora_adapter",
        json={"lora_name": name, "lora_path": str(path)},
        timeout=120,
    )
    if answer.status_code != 200:
        raise RuntimeError(f"loading {name} into {base_url}: {answer.status_code} {answer.text}")


def adapters_model(args: argparse.Namespace) -> Path:
    """The built-in model of `--size` with the run's adapters (the same base weights), in
    tetriserve's cache beside it; made on first use."""
    ranks = "-".join(map(str, args.ranks))
    out = tetriserve_home() / "models" / f"{args.size}-seed0-lora{args.adapters}-r{ranks}"
    adapters = AdapterSet(count=args.adapters, ranks=tuple(args.ranks))
    return make_model(out, size=args.size, seed=0, adapters=adapters)


def run_tetriserve(bench: LoraBench, progress: tqdm) -> dict[str, Any]:
    from deploy.app_builder import deployed_on_cluster

    config = DeploymentConfig(
        model_dir=bench.model_dir, lora_root=bench.lora_root, max_model_len=bench.max_model_len
    )
    with deployed_on_cluster(config, APP_NAME, bench.args.serve_port) as base_url:
        return bench.serve("tetriserve", base_url, lambda n: f"{BASE_MODEL_NAME}:{n}", progress)


def run_vllm(bench: LoraBench, progress: tqdm) -> dict[str, Any]:
    env = {
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
        lora_load_log.ENV_VAR: str(bench.load_log),
    }
    log = bench.work / "logs" / "vllm.log"
    server = vllm_on_both_cores(bench.model_dir, bench.max_model_len, log, env)
    with running([server]):
        return bench.serve("vllm", server.base_url, lambda n: n, progress)


def run(args: argparse.Namespace) -> int:
    base = ensure_model(args.size)
    lora_root = adapters_model(args) / "adapters"
    work = args.out or Path(tempfile.mkdtemp(prefix="tetriserve-bench-lora-"))
    work.mkdir(parents=True, exist_ok=True)
    names = sorted(path.name for path in lora_root.iterdir() if path.is_dir())
    sequence = adapter_sequence(names, args.requests, args.zipf, args.seed)
    bench = LoraBench(args, base, lora_root, names, sequence, work)
    # tetriserve's engines log their adapter loads too (on the cluster this run starts).
    os.environ[lora_load_log.ENV_VAR] = str(bench.load_log)
    address = os.environ.get("RAY_ADDRESS")
    init_ray(address=address, namespace=NAMESPACE, log_to_driver=False, ignore_reinit_error=True)
    distinct = len(set(sequence))
    print(
        f"model {base}; {len(names)} adapters (ranks {args.ranks}) in {lora_root}; "
        f"{args.requests} requests at {args.rate}/s over {distinct} adapters (Zipf s={args.zipf});"
        f" output in {work}"
    )
    with tqdm(total=6, unit="stage", file=sys.stdout) as progress:
        ours = run_tetriserve(bench, progress)
        theirs = run_vllm(bench, progress)
    slo_tpot_ms = args.slo_factor * report.mean_tpot_ms(theirs["no_lora"])
    figures = {
        system: report.figures(
            runs["lora"], slo_tpot_ms, runs["loads"], report.mean_tpot_ms(runs["no_lora"])
        )
        for system, runs in (("tetriserve", ours), ("vllm", theirs))
    }
    table = report.to_markdown(figures["tetriserve"], figures["vllm"], slo_tpot_ms)
    table += "\nCold starts by rank (engine loads during the LoRA run):\n\n"
    table += report.cold_start_table({"tetriserve": ours["loads"], "vllm": theirs["loads"]})
    print("\n" + table)
    payload = report.to_json(figures["tetriserve"], figures["vllm"])
    summary = {
        "config": {k: str(v) for k, v in vars(args).items() if k != "func"},
        "slo_tpot_ms": slo_tpot_ms,
        "distinct_adapters": distinct,
        **payload,
    }
    (work / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (work / "table.md").write_text(table)
    plot = report.write_plot(
        {"tetriserve": ours["lora"], "vllm": theirs["lora"]}, slo_tpot_ms, work / "lora.png"
    )
    print(f"wrote {work / 'results.json'}, {work / 'table.md'}, {plot}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if all(f.failed == 0 for f in figures.values()) else 1
