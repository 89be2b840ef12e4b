"""`tetriserve bench workloads`: the five TetriInfer workloads, tetriserve against vLLM.

Runs as a Ray job (`ray job submit -- tetriserve bench workloads ...`, it joins the cluster
the job runs on) or directly (it starts a local Ray). On the same cores, one after the other:

1. tetriserve, disaggregated (one prefill and one decode instance, one core each), deployed
   on the cluster's Serve under its own route; ChunkSize profiled (or given);
2. vLLM colocated: plain `vllm serve` on both cores, with the same engine settings.

Each system first serves a warm-up mix (the length predictor learns from it), then every
workload: the same requests (fixed seed), Poisson arrivals, vLLM's own benchmark client.
Per workload and system: mean / p50 / p99 TTFT and JCT, instance-seconds and core-seconds
(tetriserve: the seconds each engine had work, from the instances; vLLM: the seconds any
request was in flight) and performance per dollar; then the ratios, and the CPU seconds
each role used on this node during the run (deploy/cpu_profile.py), which says why.
Results go to the output directory as results.json, table.md and PNG plots (cpu.png: the
profile); `--json PATH` writes the list of per-workload results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cluster.checkpoint import inspect_checkpoint
from cluster.length_predictor import LengthPredictor, held_out_accuracy
from cluster.workload_mix import WORKLOADS
from deploy import bench_workloads_report as report
from deploy import cpu_profile, workloads
from deploy.bench_args import add_model_args, positive, sampling_args, workloads_arg
from deploy.bench_args import model_dir as bench_model_dir
from deploy.bench_latency import BASELINE_FLAGS, drive
from deploy.bench_servers import ServerProcess, free_port, running
from deploy.local_ray import init_ray
from deploy.serve_cmd import add_core_sharing_args, add_scheduling_args, scheduling_from_args

SERVED_NAME = "base"
APP_NAME = "tetriserve-bench"
NAMESPACE = "tetriserve-bench"
VLLM_CORES = 2
WARMUP_SEED = 1000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "workloads",
        help="LPLD, LPHD, HPLD, HPHD and Mixed: tetriserve against colocated vLLM",
        description="Serve the same requests with tetriserve (prefill and decode on separate "
        "instances) and with colocated vLLM on the same cores; print TTFT, JCT, resource use "
        "and performance per dollar per workload, with the ratios.",
    )
    add_run_args(parser, default_workloads=WORKLOADS)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="results list")
    parser.set_defaults(func=run)


def add_run_args(parser: argparse.ArgumentParser, default_workloads: Sequence[str]) -> None:
    """What a run of the workloads on tetriserve takes: the model, the requests and how they
    arrive, the output directory, and tetriserve's deployment and scheduling flags (for
    `bench workloads` and `sim validate`)."""
    add_model_args(parser)
    parser.add_argument(
        "--workloads",
        type=workloads_arg,
        default=list(default_workloads),
        help=f"comma-separated subset (default: {','.join(default_workloads)})",
    )
    parser.add_argument("--requests", type=positive, default=48, help="requests per workload")
    parser.add_argument("--rate", type=float, default=4.0, help="Poisson arrivals per second")
    parser.add_argument("--warmup", type=positive, default=32, help="warm-up requests")
    parser.add_argument("--max-model-len", type=positive, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serve-port", type=int, default=8000, help="the cluster's Serve port")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="output directory")
    add_core_sharing_args(parser)  # tetriserve's side: how its engines share the cores,
    add_scheduling_args(parser)  # ChunkSize, policies, streaming


def result_path(work: Path, system: str, name: str) -> Path:
    """Where a run of the workloads keeps one system's client result for one workload."""
    return work / "results" / f"{system}-{name}.json"


class Bench:
    """One run: the requests, where they are written, and how a system is driven."""

    def __init__(self, args: argparse.Namespace, model_dir: Path, work: Path) -> None:
        from tokenizers import Tokenizer

        self.args = args
        self.model_dir = model_dir
        self.work = work
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.chunk_tokens = args.chunk_tokens or _profiled_chunk_tokens(args, model_dir)
        self.thresholds = workloads.thresholds_for(
            self.chunk_tokens, workloads.LIGHT_DECODE, workloads.HEAVY_DECODE
        )
        self.requests = {
            name: self._workload(name, args.requests, args.seed) for name in args.workloads
        }
        self.warmup = self._workload("Mixed", args.warmup, WARMUP_SEED)
        self.cpu = cpu_profile.CpuProfile()
        # workload -> system -> CPU seconds per role during its run
        self.cpu_profiles: dict[str, dict[str, cpu_profile.Window]] = {}

    def _count(self, text: str) -> int:
        return len(self._encode(text))

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def _workload(self, name: str, count: int, seed: int) -> list[workloads.WorkloadRequest]:
        return workloads.make_workload(
            name, count, self._count, self.chunk_tokens, self.args.max_model_len, seed=seed
        )

    def dataset(self, name: str) -> Path:
        requests = self.warmup if name == "warmup" else self.requests[name]
        return workloads.write_dataset(requests, self.work / "datasets" / f"{name}.jsonl")

    def client_args(self, base_url: str, name: str, result: Path) -> list[str]:
        """vLLM's benchmark client on one dataset; warm-up runs closed-loop, others Poisson."""
        count = len(self.warmup if name == "warmup" else self.requests[name])
        rate = (
            ["--max-concurrency", "8"]
            if name == "warmup"
            else ["--request-rate", str(self.args.rate), "--burstiness", "1.0"]
        )
        return [
            "--backend", "openai", "--base-url", base_url, "--endpoint", "/v1/completions",
            "--model", SERVED_NAME, "--tokenizer", str(self.model_dir),
            "--dataset-name", "custom", "--dataset-path", str(self.dataset(name)),
            "--custom-output-len", "-1", "--skip-chat-template", "--disable-shuffle",
            "--num-prompts", str(count), *rate, "--ignore-eos", *sampling_args(self.args),
            "--seed", str(self.args.seed), "--save-detailed", "--save-result",
            "--result-dir", str(result.parent), "--result-filename", result.name,
            "--disable-tqdm",
        ]  # fmt: skip

    def run_system(
        self,
        system: str,
        base_url: str,
        busy: Callable[[dict[str, Any]], tuple[float, float]],
        progress: tqdm,
    ) -> dict[str, report.SystemFigures]:
        """Warm-up, then every workload; `busy` turns a client result into the
        (instance-seconds, core-seconds) spent since its previous call."""
        log = self.work / "logs" / "client.log"
        warmup = drive(
            self.client_args(base_url, "warmup", self.result_path(system, "warmup")), log
        )
        busy(warmup)  # the warm-up's busy time is not the first workload's
        figures = {}
        for name in self.requests:
            progress.set_description(f"{system}: {name}")
            with self.cpu.measure() as window:
                result = drive(
                    self.client_args(base_url, name, self.result_path(system, name)), log
                )
            self.cpu_profiles.setdefault(name, {})[system] = window
            instance_s, core_s = busy(result)
            figures[name] = report.figures_from_client(result, instance_s, core_s)
            progress.update(1)
            tqdm.write(_one_line(system, name, figures[name]))
        return figures

    def result_path(self, system: str, name: str) -> Path:
        return result_path(self.work, system, name)


def _one_line(system: str, name: str, figures: report.SystemFigures) -> str:
    return (
        f"  {system:10s} {name:5s} TTFT mean {figures.ttft_mean_ms:8.1f} ms, "
        f"JCT mean {figures.jct_mean_ms:8.1f} ms, core-s {figures.core_seconds:6.1f}, "
        f"failed {figures.failed}/{figures.requests}"
    )


def _deployment(args: argparse.Namespace, model_dir: Path, chunk_tokens: int | None):
    from cluster.config import DeploymentConfig

    return DeploymentConfig(
        model_dir=model_dir,
        max_model_len=args.max_model_len,
        metrics_port=None,
        chunk_tokens=chunk_tokens,
        share_cores=not args.no_share_cores,
        prefill_core_share=args.prefill_core_share,
        scheduling=scheduling_from_args(args),
    )


def _profiled_chunk_tokens(args: argparse.Namespace, model_dir: Path) -> int:
    """The ChunkSize tetriserve's deployment will profile (and cache), known before it
    starts: it decides which prompts count as heavy prefills."""
    from actors.model_shipping import hold_here
    from deploy.app_builder import chunk_tokens

    config = _deployment(args, model_dir, None)
    checkpoint = inspect_checkpoint(model_dir)
    return chunk_tokens(config, checkpoint, hold_here(checkpoint.model_dir))


def predictor_accuracy(bench: Bench) -> dict[str, float]:
    """The length predictor on the benchmark's prompt families: held-out accuracy against
    always guessing the most common bucket."""
    everything = [r for requests in bench.requests.values() for r in requests] + bench.warmup
    samples = workloads.family_samples(everything, bench._encode)
    return held_out_accuracy(LengthPredictor(), samples, seed=bench.args.seed)


def tetriserve_on_cluster(bench: Bench) -> AbstractContextManager[str]:
    """tetriserve deployed on the cluster's Serve; its base URL; removed after."""
    from deploy.app_builder import deployed_on_cluster

    config = _deployment(bench.args, bench.model_dir, bench.chunk_tokens)
    return deployed_on_cluster(config, APP_NAME, bench.args.serve_port)


def _instance_busy() -> dict[str, tuple[float, int]]:
    """Each serving instance's busy seconds so far, and the cores its engine may run on."""
    import ray

    names = [n for n in ray.util.list_named_actors() if n.startswith(("prefill-", "decode-"))]
    stats = ray.get([ray.get_actor(n).stats.remote() for n in names])
    return {name: (s["busy_seconds"], s["cores"]) for name, s in zip(names, stats, strict=True)}


def run_tetriserve(bench: Bench, progress: tqdm) -> dict[str, report.SystemFigures]:
    with tetriserve_on_cluster(bench) as base_url:
        before = _instance_busy()

        def busy(_: dict[str, Any]) -> tuple[float, float]:
            nonlocal before
            after = _instance_busy()
            busy = {n: seconds - before.get(n, (0.0, 0))[0] for n, (seconds, _) in after.items()}
            before = after
            # An engine that borrows a core is charged it for all of its busy time (more
            # than it takes: it leaves the core whenever its owner runs).
            cores = sum(busy[n] * after[n][1] for n in busy)
            return sum(busy.values()), cores

        return bench.run_system("tetriserve", base_url, busy, progress)


def vllm_on_both_cores(
    model_dir: Path, max_model_len: int, log: Path, env: dict[str, str] | None = None
) -> ServerProcess:
    """Plain `vllm serve` with the baseline's engine settings, bound to VLLM_CORES cores."""
    port = free_port()
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", *BASELINE_FLAGS,
        "--max-model-len", str(max_model_len), "--model", str(model_dir), "--port", str(port),
    ]  # fmt: skip
    cores = {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_OMP_THREADS_BIND": f"0-{VLLM_CORES - 1}"}
    return ServerProcess("vLLM", command, port, log, env={**cores, **(env or {})})


def run_vllm(bench: Bench, progress: tqdm) -> dict[str, report.SystemFigures]:
    server = vllm_on_both_cores(
        bench.model_dir, bench.args.max_model_len, bench.work / "logs" / "vllm.log"
    )

    def busy(result: dict[str, Any]) -> tuple[float, float]:
        ok = [not e for e in result["errors"]]
        starts = [s for s, good in zip(result["start_times"], ok, strict=True) if good]
        latencies = [x for x, good in zip(result["latencies"], ok, strict=True) if good]
        seconds = report.busy_seconds(starts, latencies)
        return seconds, seconds * VLLM_CORES

    with running([server]):
        return bench.run_system("vllm", server.base_url, busy, progress)


def write_outputs(
    bench: Bench, results: Sequence[report.WorkloadResult], accuracy: dict[str, float]
) -> None:
    out = bench.work
    payload = report.to_json(results)
    summary = {
        "config": {k: str(v) for k, v in vars(bench.args).items() if k != "func"},
        "chunk_tokens": bench.chunk_tokens,
        "thresholds": bench.thresholds.describe(),
        "length_predictor": accuracy,
        "results": payload,
        "cpu_profile": {
            name: {system: window.to_dict() for system, window in runs.items()}
            for name, runs in bench.cpu_profiles.items()
        },
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    table = report.to_markdown(results, bench.thresholds.describe())
    cpu = cpu_profile.to_markdown(bench.cpu_profiles)
    (out / "table.md").write_text(
        f"{table}\n{report.verdict(results)}\n\n## CPU seconds per role (this node)\n\n{cpu}"
    )
    plots = report.write_plots(results, out)
    plots.append(cpu_profile.write_plot(bench.cpu_profiles, out / "cpu.png"))
    print(f"wrote {out / 'results.json'}, {out / 'table.md'}, {', '.join(map(str, plots))}")
    if bench.args.json is not None:
        bench.args.json.parent.mkdir(parents=True, exist_ok=True)
        bench.args.json.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
        print(f"wrote {bench.args.json}")


def start_bench(args: argparse.Namespace, purpose: str) -> Bench:
    """The model, the output directory (`--out`, or a new one named for `purpose`) and Ray,
    for a run of the workloads; says where each is."""
    model_dir = bench_model_dir(args)
    work = args.out or Path(tempfile.mkdtemp(prefix=f"tetriserve-{purpose}-"))
    work.mkdir(parents=True, exist_ok=True)
    address = os.environ.get("RAY_ADDRESS")
    # Actors' logs stay in Ray's log files: printing them here would stall the client.
    init_ray(address=address, namespace=NAMESPACE, log_to_driver=False, ignore_reinit_error=True)
    print(f"model {model_dir}; Ray at {address or 'a new local cluster'}; output in {work}")
    bench = Bench(args, model_dir, work)
    print(f"ChunkSize {bench.chunk_tokens} tokens; {bench.thresholds.describe()}")
    return bench


def run(args: argparse.Namespace) -> int:
    bench = start_bench(args, "bench-workloads")
    accuracy = predictor_accuracy(bench)
    print(
        f"length predictor on the workloads' prompt families ({accuracy['samples']} samples, "
        f"held-out 25%): accuracy {accuracy['accuracy']:.3f}, "
        f"majority-class baseline {accuracy['majority_accuracy']:.3f}"
    )
    with tqdm(total=2 * len(bench.requests), unit="run", file=sys.stdout) as progress:
        ours = run_tetriserve(bench, progress)
        theirs = run_vllm(bench, progress)
    results = [report.WorkloadResult(name, ours[name], theirs[name]) for name in bench.requests]
    print("\n" + report.to_markdown(results, bench.thresholds.describe()))
    print(report.verdict(results))
    print(
        "\nCPU seconds per role on this node, per run:\n"
        + cpu_profile.to_markdown(bench.cpu_profiles)
    )
    write_outputs(bench, results, accuracy)
    return 0 if all(r.tetriserve.failed == 0 and r.vllm.failed == 0 for r in results) else 1
