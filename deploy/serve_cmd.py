"""`tetriserve serve`: starts (or joins) a Ray cluster and runs the app in the foreground."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from cluster.config import DeploymentConfig, SchedulingConfig
from deploy.bench_args import positive
from deploy.local_ray import init_ray

APP_NAME = "tetriserve"
STOP_CHECK_S = 0.2
TARGETS_REFRESH_S = 10.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve the OpenAI-compatible API")
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: tiny)")
    parser.add_argument(
        "--lora-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder that /v1/load_lora_adapter paths must lie under (default: the model's "
        "adapters/)",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="a running Ray cluster to join, e.g. 10.0.0.2:6379 (default: RAY_ADDRESS, "
        "else a new local cluster)",
    )
    parser.add_argument(
        "--placement",
        type=Path,
        default=None,
        metavar="FILE",
        help="YAML or JSON: per role (prefill, decode, memory_node, switch, adapter_store, "
        "scheduler, ingress), the Ray resources its actors claim: num_cpus, num_gpus, "
        "resources {NAME: amount}",
    )
    parser.add_argument(
        "--proxy-location",
        choices=["HeadOnly", "EveryNode"],
        default="HeadOnly",
        help="Serve's HTTP and gRPC proxies: on the head node only (one address to dial), or"
        " on every node (Ray Serve's default; each node needs the ports free)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=9000)
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--kv-cache-gib", type=int, default=1)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--metrics-port", type=int, default=9400, help="base port of the actors' exporters"
    )
    parser.add_argument(
        "--max-body-bytes",
        type=positive,
        default=DeploymentConfig.model_fields["max_body_bytes"].default,
        help="largest request body accepted (larger: 413)",
    )
    parser.add_argument("--prefill", type=int, default=1, help="prefill instances")
    parser.add_argument("--decode", type=int, default=1, help="decode instances")
    parser.add_argument("--memory-nodes", type=int, default=1, help="memory nodes")
    parser.add_argument(
        "--colocated", action="store_true", help="one engine runs whole requests (no P/D split)"
    )
    add_core_sharing_args(parser)
    add_scheduling_args(parser)
    parser.set_defaults(func=run)


def add_core_sharing_args(parser: argparse.ArgumentParser) -> None:
    """How CPU engines share their cores, for `serve` and `bench workloads`."""
    parser.add_argument(
        "--no-share-cores",
        action="store_true",
        help="each engine keeps to its own core, even while its partner's is idle (CPU engines)",
    )
    parser.add_argument(
        "--prefill-core-share",
        type=float,
        default=DeploymentConfig.model_fields["prefill_core_share"].default,
        help="share of any second a prefill engine may also run on its decode partner's core",
    )


def add_scheduling_args(parser: argparse.ArgumentParser) -> None:
    """tetriserve's scheduling flags, shared by `serve` and `bench workloads`."""
    group = parser.add_argument_group("scheduling (disaggregated mode)")
    group.add_argument(
        "--chunk-tokens", type=positive, default=None, help="ChunkSize (default: profiled at start)"
    )
    group.add_argument("--prefill-policy", choices=["fcfs", "sjf", "ljf"], default="fcfs")
    group.add_argument("--prefill-sched-batch", type=int, default=16, help="PrefillSchedBatch")
    group.add_argument(
        "--dispatcher",
        choices=["least_work", "power_of_two", "random", "least_loaded"],
        default="least_work",
    )
    group.add_argument(
        "--admission",
        choices=["greedy", "reserve_static", "reserve_dynamic"],
        default="reserve_dynamic",
        help="decode admission policy",
    )
    group.add_argument(
        "--length-train-file",
        type=Path,
        default=None,
        help="ShareGPT-format JSON to train the output-length predictor on",
    )
    group.add_argument("--no-flip", action="store_true", help="instances never change role")
    defaults = SchedulingConfig.model_fields
    group.add_argument(
        "--stream-interval-ms",
        type=int,
        default=defaults["stream_interval_ms"].default,
        help="longest a decode stream gathers steps into one message",
    )
    group.add_argument(
        "--stream-messages-per-s",
        type=int,
        default=defaults["stream_messages_per_s"].default,
        help="messages per second a decode instance's streams share",
    )
    group.add_argument(
        "--max-queued-per-instance",
        type=int,
        default=defaults["max_queued_per_instance"].default,
        help="waiting requests each instance of a role holds before new ones get a 429",
    )
    group.add_argument(
        "--kv-lease-ttl-s",
        type=float,
        default=defaults["kv_lease_ttl_s"].default,
        help="seconds a request's KV pages stay pinned for its decode unless released",
    )


def scheduling_from_args(args: argparse.Namespace) -> SchedulingConfig:
    return SchedulingConfig(
        prefill_policy=args.prefill_policy,
        prefill_sched_batch=args.prefill_sched_batch,
        dispatcher=args.dispatcher,
        admission=args.admission,
        length_train_file=args.length_train_file,
        flip=not args.no_flip,
        stream_interval_ms=args.stream_interval_ms,
        stream_messages_per_s=args.stream_messages_per_s,
        max_queued_per_instance=args.max_queued_per_instance,
        kv_lease_ttl_s=args.kv_lease_ttl_s,
    )


def config_from_args(args: argparse.Namespace) -> DeploymentConfig:
    return DeploymentConfig(
        model_dir=args.model,
        lora_root=args.lora_root,
        host=args.host,
        port=args.port,
        grpc_port=args.grpc_port,
        max_model_len=args.max_model_len,
        kv_cache_gib=args.kv_cache_gib,
        device=args.device,
        prefill=args.prefill,
        decode=args.decode,
        memory_nodes=args.memory_nodes,
        colocated=args.colocated,
        share_cores=not args.no_share_cores,
        prefill_core_share=args.prefill_core_share,
        metrics_port=args.metrics_port,
        max_body_bytes=args.max_body_bytes,
        chunk_tokens=args.chunk_tokens,
        scheduling=scheduling_from_args(args),
        placement=read_placement(args.placement) if args.placement else {},
    )


def read_placement(path: Path) -> dict:
    """A placement file's mapping (validated by DeploymentConfig); YAML, of which JSON is a
    subset."""
    import yaml

    try:
        placement = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"tetriserve: cannot read placement file {path}: {exc}") from None
    if not isinstance(placement, dict):
        raise SystemExit(f"tetriserve: placement file {path} must hold a mapping of roles")
    return placement


def write_scrape_config(config: DeploymentConfig) -> Path:
    """prometheus.yml in tetriserve's home, reading the actors' targets from
    prometheus/targets.json there (written now, and kept current by `refresh_targets`)."""
    from cluster.model_factory import tetriserve_home
    from deploy.prometheus_config import scrape_config

    path = tetriserve_home() / "prometheus.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(scrape_config(config, targets_path()))
    refresh_targets(config)
    return path


def targets_path() -> Path:
    from cluster.model_factory import tetriserve_home

    return tetriserve_home() / "prometheus" / "targets.json"


def refresh_targets(config: DeploymentConfig) -> None:
    """The actors' exporter addresses, as they are now, into the targets file."""
    from deploy.prometheus_config import actor_targets, write_targets

    write_targets(targets_path(), actor_targets(config))


def run(args: argparse.Namespace) -> int:
    """Starts the deployment and serves until Ctrl-C or SIGTERM. Either stops it at any
    time: the deployment's start (minutes, on a model its engines profile first) runs in a
    thread, so that a stop asked for meanwhile is not held until it ends; only the Ray
    cluster's own start (seconds) is waited for."""
    from ray import serve

    from deploy.app_builder import shut_down
    from deploy.grpc_ingress import grpc_options

    config = config_from_args(args)
    stop, deployed = threading.Event(), threading.Event()
    failure: list[BaseException] = []
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    init_ray(address=args.address, namespace=APP_NAME, ignore_reinit_error=True)
    serve.start(
        proxy_location=args.proxy_location,
        http_options={"host": config.host, "port": config.port},
        grpc_options=grpc_options(config.grpc_port),
    )

    def deploy() -> None:
        try:
            _deploy(config)
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
        finally:
            deployed.set()

    threading.Thread(target=deploy, name="deploy", daemon=True).start()
    try:
        while not (stop.is_set() or deployed.is_set()):
            stop.wait(STOP_CHECK_S)
        if failure:
            raise failure[0]
        if not deployed.is_set():
            print("tetriserve: stopped while starting; shutting down")
            return 130
        while not stop.wait(TARGETS_REFRESH_S):
            refresh_targets(config)  # an actor started again elsewhere is followed
        print("tetriserve: shutting down")
        return 0
    finally:
        # A cluster it joined keeps its Serve (other applications may be on it).
        joined = args.address or os.environ.get("RAY_ADDRESS")
        shut_down(config, APP_NAME if joined else None)


def _deploy(config: DeploymentConfig) -> None:
    from ray import serve

    from deploy.app_builder import build_app

    serve.run(build_app(config), name=APP_NAME, route_prefix="/")
    print(f"tetriserve: OpenAI API on http://{config.host}:{config.port}/v1 (Ctrl-C stops)")
    print(f"tetriserve: gRPC tetriserve.v1.Generation on {config.host}:{config.grpc_port}")
    scrape = write_scrape_config(config)
    print(
        f"tetriserve: metrics on http://{config.host}:{config.port}/metrics; scrape config {scrape}"
    )
