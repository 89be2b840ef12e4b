"""`tetriserve bench latency`: latency at concurrency 1, tetriserve against plain vLLM.

Both systems serve the same model on the same cores and are driven by the same client,
vLLM's own benchmark client (`vllm.benchmarks.serve`, run in this process):

1. start plain vLLM (`python -m vllm.entrypoints.openai.api_server`) and `tetriserve serve`
   on free loopback ports, and wait until both answer `/v1/models`;
2. warm each up with a few requests;
3. run the client with `--max-concurrency 1` on a fixed random dataset against plain vLLM,
   then tetriserve, round after round (A B A B); both stay up, one is driven at a time;
4. print, per figure, each system's median over rounds with its spread and the ratio;
   `--json` writes the raw rounds and the summary, `--out` a markdown table and a bar chart;
5. stop both servers (SIGINT, then SIGKILL), also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploy import bench_latency_report as report
from deploy.bench_args import add_model_args, positive, sampling_args
from deploy.bench_args import model_dir as bench_model_dir
from deploy.bench_servers import ServerProcess, free_port, running

SERVED_NAME = "base"
SEED = 0
# Plain vLLM as tetriserve's engines run it: float32, 1024 tokens, 32-token blocks, eager,
# at most 32 sequences, and LoRA on (tetriserve serves the model's adapters; LoRA costs every
# decode step about 0.8 ms on the tiny model).
BASELINE_FLAGS = ("--dtype", "float32", "--max-model-len", "1024", "--block-size", "32")
BASELINE_FLAGS += ("--enforce-eager", "--host", "127.0.0.1", "--served-model-name", SERVED_NAME)
BASELINE_FLAGS += ("--enable-lora", "--max-lora-rank", "64", "--max-loras", "4")
BASELINE_FLAGS += ("--max-num-seqs", "32")
PLACEMENT_NOTE = (
    "note: both servers stay up on the same cores: plain vLLM's worker binds to core 0 by "
    "default, tetriserve's prefill and decode engines to cores 0 and 1; only one side is "
    "driven at a time."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "latency",
        help="latency at concurrency 1: tetriserve against plain vLLM on the same model",
        description="Serve one model with plain vLLM and with tetriserve, drive each with "
        "vLLM's benchmark client at concurrency 1 (interleaved rounds) and print TTFT, "
        "TPOT, ITL and end-to-end latency of both with their ratio.",
    )
    add_model_args(parser)
    parser.add_argument("--rounds", type=positive, default=2, help="A B rounds (default 2)")
    parser.add_argument("--num-prompts", type=positive, default=20, help="requests per run")
    parser.add_argument("--input-len", type=positive, default=128, help="prompt tokens")
    parser.add_argument("--output-len", type=positive, default=32, help="generated tokens")
    parser.add_argument("--warmup", type=positive, default=3, help="warm-up requests per server")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write JSON")
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="write table.md, latency.png, logs"
    )
    parser.set_defaults(func=run)


def _module_command(module: str, model_dir: Path, port: int, *flags: str) -> list[str]:
    """`python -m MODULE FLAGS... --model DIR --port PORT` with this interpreter."""
    return [sys.executable, "-m", module, *flags, "--model", str(model_dir), "--port", str(port)]


def servers(model_dir: Path, work: Path) -> tuple[ServerProcess, ServerProcess]:
    """(plain vLLM, tetriserve), each on a free port with its log under `work/logs`."""
    vllm_port, tetriserve_port = free_port(), free_port()
    baseline = ServerProcess(
        "plain vLLM",
        _module_command(
            "vllm.entrypoints.openai.api_server", model_dir, vllm_port, *BASELINE_FLAGS
        ),
        vllm_port,
        work / "logs" / "vllm.log",
        env={"VLLM_CPU_KVCACHE_SPACE": "1"},
    )
    tetriserve = ServerProcess(
        "tetriserve",
        _module_command("deploy.cli", model_dir, tetriserve_port, "serve"),
        tetriserve_port,
        work / "logs" / "tetriserve.log",
        env={"RAY_ADDRESS": "local"},  # a cluster of its own, never one found on the machine
    )
    return baseline, tetriserve


def client_args(
    args: argparse.Namespace, model_dir: Path, server: ServerProcess, prompts: int, result: Path
) -> list[str]:
    """Command-line arguments of vLLM's benchmark client for one run against one server."""
    return [
        "--backend", "openai", "--base-url", server.base_url, "--endpoint", "/v1/completions",
        "--model", SERVED_NAME, "--tokenizer", str(model_dir), "--dataset-name", "random",
        "--random-input-len", str(args.input_len), "--random-output-len", str(args.output_len),
        "--num-prompts", str(prompts), "--max-concurrency", "1", "--ignore-eos",
        *sampling_args(args), "--seed", str(SEED),
        "--percentile-metrics", ",".join(report.METRICS), "--metric-percentiles", "99",
        "--save-result", "--result-dir", str(result.parent), "--result-filename", result.name,
        *([] if sys.stderr.isatty() else ["--disable-tqdm"]),
    ]  # fmt: skip


def drive(argv: list[str], log: Path) -> dict[str, Any]:
    """One run of vLLM's benchmark client in this process; its own printout goes to `log`."""
    from vllm.benchmarks.serve import add_cli_args, main

    parser = argparse.ArgumentParser(prog="vllm-bench-serve")
    add_cli_args(parser)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out, contextlib.redirect_stdout(out):
        return main(parser.parse_args(argv))


def run_rounds(
    args: argparse.Namespace, model_dir: Path, pair: Sequence[ServerProcess], work: Path
) -> dict[str, list[dict[str, Any]]]:
    """Warm up each server, then the rounds A B A B; returns each system's results."""
    results: dict[str, list[dict[str, Any]]] = {server.name: [] for server in pair}
    for server in pair:
        print(f"[warm-up] {server.name}: {args.warmup} requests")
        result = work / "results" / f"warmup-{_slug(server)}.json"
        drive(client_args(args, model_dir, server, args.warmup, result), work / "client.log")
    for round_index in range(1, args.rounds + 1):
        for server in pair:
            result = work / "results" / f"round{round_index}-{_slug(server)}.json"
            argv = client_args(args, model_dir, server, args.num_prompts, result)
            print(f"[round {round_index}/{args.rounds}] {server.name}: {args.num_prompts} requests")
            figures = drive(argv, work / "client.log")
            report.check_complete(figures, args.num_prompts, f"{server.name} round {round_index}")
            print(
                f"    mean TTFT {figures['mean_ttft_ms']:.2f} ms, "
                f"mean TPOT {figures['mean_tpot_ms']:.2f} ms, "
                f"mean E2EL {figures['mean_e2el_ms']:.2f} ms"
            )
            results[server.name].append(figures)
    return results


def _slug(server: ServerProcess) -> str:
    return server.name.replace(" ", "-").lower()


def write_outputs(
    args: argparse.Namespace, rows: list[report.Row], raw: dict[str, list], title: str
) -> None:
    if args.json is not None:
        payload = {
            "config": {
                key: str(value) if isinstance(value, Path) else value
                for key, value in vars(args).items()
                if key != "func"
            },
            "rounds": raw,
            "summary": report.summary_dict(rows),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.out is not None:
        markdown = f"# {title}\n\n{report.to_markdown(rows)}\n{report.verdict(rows)}\n"
        (args.out / "table.md").write_text(markdown)
        chart = report.write_chart(rows, args.out / "latency.png", title)
        print(f"wrote {args.out / 'table.md'} and {chart}")


def run(args: argparse.Namespace) -> int:
    model_dir = bench_model_dir(args)
    work = args.out or Path(tempfile.mkdtemp(prefix="tetriserve-bench-latency-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"model {model_dir}; logs and raw results under {work}")
    print(PLACEMENT_NOTE)
    pair = servers(model_dir, work)
    try:
        with running(pair):
            raw = run_rounds(args, model_dir, pair, work)
    except KeyboardInterrupt:
        print("interrupted: both servers stopped")
        return 130
    baseline, tetriserve = (raw[server.name] for server in pair)
    rows = report.summarize(baseline, tetriserve)
    title = (
        f"latency at concurrency 1, {model_dir.name}: {args.rounds} rounds x "
        f"{args.num_prompts} requests, {args.input_len} in / {args.output_len} out tokens"
    )
    print(f"\n{title}\n{report.format_table(rows)}\n{report.verdict(rows)}\n{PLACEMENT_NOTE}")
    write_outputs(args, rows, {"vllm": baseline, "tetriserve": tetriserve}, title)
    return 0
