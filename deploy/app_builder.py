"""Builds the Serve application: the actors of the request path and the ingress in front.

Disaggregated (the default): memory nodes, a SuperNIC switch in front of them, the LoRA
adapter store, serving instances that start in the prefill or the decode role (each a KV
producer and consumer, so roles can flip), and the global scheduler. ChunkSize is the
deployment's or, when it names none, profiled once (actors/instances/chunk_profiler.py).
Colocated: the adapter store and one engine instance that runs whole requests. Either way
the ingress holds the adapter store too: it resolves each request's adapter and passes
run-time loads on to it. `app_from_args` is the Serve application builder that `serve run
deploy/serve_config.yaml` calls.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.adapters.adapter_store import LoRAAdapterStore
from actors.engine import core_share
from actors.engine.adapter import resolve_device
from actors.instances.chunk_profiler import chunk_tokens_for
from actors.instances.engine_instance import EngineInstance
from actors.instances.serving_instance import ServingInstance
from actors.memory.memory_node import MemoryNode
from actors.model_shipping import HOLDER_NAME, ShippedModel, hold_here
from actors.request.request_path import ColocatedPath, DisaggregatedPath
from actors.scheduler.global_scheduler import GlobalScheduler
from actors.switch.supernic_switch import SuperNICSwitch
from cluster.checkpoint import CheckpointInfo, inspect_checkpoint
from cluster.config import DeploymentConfig, EngineConfig, RolePlacement
from cluster.instance_flip import Role
from cluster.kv_capability import deployment_secret
from cluster.kv_pages import PageLayout
from cluster.model_factory import ensure_model
from deploy.bench_servers import free_port
from deploy.openai_app import OpenAIIngress
from deploy.prometheus_config import metrics_ports

_DETACHED = False
# Sequences a CPU engine runs at once, per core it is bound to (DeploymentConfig.max_num_seqs).
SEQS_PER_CORE = 16
# Every actor of the deployment whose process dies is started again by Ray: a serving
# instance with a new engine on the same cores, which rejoins placement once it answers the
# scheduler's monitor; a memory node empty (KV is recomputed until then); the switch on the
# same port, so that every KV client reconnects to it; the scheduler with nothing in flight
# (requests under way finish with their owners) and the loads of its next monitor round;
# the adapter store with the checkpoint's own adapters (those loaded at run time are
# loaded again by their users).
RESTARTS = 3
# The engines' maximum LoRA rank, at the least (adapters of higher rank are refused a load).
MAX_LORA_RANK = 64
# How long a stop waits for a memory node to give its shared arena back.
RELEASE_TIMEOUT_S = 10.0
KV_CONNECTOR = {
    "kv_connector": "TetriserveConnector",
    "kv_connector_module_path": "actors.engine.kv_connector",
    "kv_load_failure_policy": "recompute",
}


def _actor(
    cls: type,
    name: str,
    placed: RolePlacement,
    concurrent: bool = True,
    restarts: int = 0,
    retried: bool = False,
    **options: Any,
) -> Any:
    """Options for one actor of the deployment.

    `placed`: the Ray resources it claims (DeploymentConfig.placed), which decide its node.
    `concurrent` is for asyncio actors (instances, scheduler); actors with synchronous
    methods and state (memory nodes, switch, adapter store) take one call at a time.
    Under `serve run` the builder runs in a task that ends once the app is built, so its
    actors must not die with it: they are detached there, and live until `ray stop`.
    `restarts`: how often Ray starts the actor again when its process dies. `retried`: a
    call under way when it died is sent again to the restarted actor (for actors whose calls
    may run twice: the scheduler's and the adapter store's). `options`: Ray's, as given.
    """
    lifetime = "detached" if _DETACHED else None
    return ray.remote(cls).options(
        name=name,
        **placed.ray_options(),
        max_concurrency=1000 if concurrent else 1,
        lifetime=lifetime,
        max_restarts=restarts,
        max_task_retries=-1 if retried else 0,
        **options,
    )


def _engine_gpus(config: DeploymentConfig) -> float:
    """What each CUDA engine claims of the cluster's GPUs (nothing for CPU engines)."""
    if resolve_device(config.device) != "cuda":
        return 0.0
    return config.gpus_per_engine(ray.cluster_resources().get("GPU", 0.0))


def _max_num_seqs(config: DeploymentConfig, cores: int) -> int | None:
    """The deployment's, or SEQS_PER_CORE per core for CPU engines (None: the default)."""
    if config.max_num_seqs is not None:
        return config.max_num_seqs
    return SEQS_PER_CORE * cores if resolve_device(config.device) == "cpu" else None


def _engine_config(
    config: DeploymentConfig,
    checkpoint: CheckpointInfo,
    core: int,
    kv_role: str | None,
    address: str,
    borrowed: int | None = None,
    core_board: Path | None = None,
) -> EngineConfig:
    """One engine on `core`, and on `borrowed` while that core's own engine is idle, as
    `core_board` says (where every engine of the node marks its own). Core numbers are
    counted on the node the engine runs on (modulo its cores: ServingInstance)."""
    kv_transfer = None
    if kv_role is not None:
        extra = {"switch_address": address}
        kv_transfer = {**KV_CONNECTOR, "kv_role": kv_role, "kv_connector_extra_config": extra}
    home = core
    sharing: dict[str, Any] = {"core_board": core_board}
    if borrowed is not None:
        sharing["borrowed_cores"] = str(borrowed)
    seqs = _max_num_seqs(config, cores=1 if borrowed is None else 2)
    return EngineConfig(
        model_dir=checkpoint.model_dir,
        device=config.device,
        max_model_len=min(config.max_model_len, checkpoint.max_model_len),
        kv_cache_gib=config.kv_cache_gib,
        max_lora_rank=_max_lora_rank(checkpoint),
        cpu_cores=str(home),
        kv_transfer=kv_transfer,
        **sharing,
        **({"max_num_seqs": seqs} if seqs is not None else {}),
    )


def _adapter_store(config: DeploymentConfig, checkpoint: CheckpointInfo, model: ShippedModel):
    """The LoRAAdapterStore, on this node while it has room: `lora_root` is a folder here,
    and adapters written to it after start-up can be loaded."""
    return _actor(
        LoRAAdapterStore,
        "adapter-store",
        config.placed("adapter_store"),
        concurrent=False,
        restarts=RESTARTS,
        retried=True,
        scheduling_strategy=_where(ray.get_runtime_context().get_node_id()),
    ).remote(model, checkpoint.adapters, config.lora_root, _max_lora_rank(checkpoint))


def _max_lora_rank(checkpoint: CheckpointInfo) -> int:
    """The engines' maximum LoRA rank: the largest of the checkpoint's adapters, and at
    least MAX_LORA_RANK, so that adapters of up to that rank can be loaded at run time."""
    return max(checkpoint.max_adapter_rank, MAX_LORA_RANK)


def _colocated_path(
    config: DeploymentConfig, checkpoint: CheckpointInfo, model: ShippedModel, store: Any
) -> ColocatedPath:
    engine = _engine_config(config, checkpoint, 0, None, "")
    seqs = _max_num_seqs(config, cores=os.cpu_count() or 1) or engine.max_num_seqs
    engine = engine.model_copy(update={"cpu_cores": None, "max_num_seqs": seqs})
    placed = config.placed("prefill", _engine_gpus(config))  # one engine: prefill's placement
    instance = _actor(EngineInstance, "engine-0", placed).remote(engine, store, model)
    ray.get(instance.ready.remote())
    return ColocatedPath(instance, str(checkpoint.model_dir))


def chunk_tokens(config: DeploymentConfig, checkpoint: CheckpointInfo, model: ShippedModel) -> int:
    """ChunkSize: the deployment's, or the knee profiled on a node where a prefill engine
    may run (one that offers what the prefill role claims)."""
    if config.chunk_tokens is not None:
        return config.chunk_tokens
    engine = _engine_config(config, checkpoint, 0, None, "")
    placed = config.placed("prefill", _engine_gpus(config))
    return chunk_tokens_for(engine, checkpoint.vocab_size, model, placed.ray_options())


def _disaggregated_path(
    config: DeploymentConfig, checkpoint: CheckpointInfo, model: ShippedModel, store: Any
) -> DisaggregatedPath:
    ports = metrics_ports(config)
    # The KV path's capabilities are minted by the scheduler and checked by the switch and
    # the memory nodes under this deployment's own secret (cluster/kv_capability.py).
    secret = deployment_secret()
    names = [memory_node_name(i) for i in range(config.memory_nodes)]
    nodes = {
        name: _actor(
            MemoryNode, name, config.placed("memory_node"), concurrent=False, restarts=RESTARTS
        ).remote(name, secret=secret)
        for name in names
    }
    switch = _actor(
        SuperNICSwitch, "switch-0", config.placed("switch"), concurrent=False, restarts=RESTARTS
    ).remote(nodes, secret=secret, port=free_port())
    address = ray.get(switch.address.remote())
    chunk = chunk_tokens(config, checkpoint, model)
    cpu_engines = resolve_device(config.device) == "cpu"
    roles = {name: Role(role) for name, role in config.instance_roles().items()}
    # One core per engine (DeploymentConfig.engine_cores: a pair that shares its cores on
    # one node, `homes`, takes two in order). Prefill i and decode i also run on each
    # other's core:
    # the prefill at every step, ahead of the decode; the decode while the prefill engine
    # is idle, as the node's core board says (actors/engine/core_share.py).
    # Every engine is KV producer and consumer (roles can flip) and computes at most
    # ChunkSize tokens per forward pass.
    partners = config.core_partners(cpu_engines)
    engine_gpus = _engine_gpus(config)
    alive = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
    homes = config.pair_nodes(alive, engine_gpus, cpu_engines)
    cores = config.engine_cores(homes)
    board = core_share.board_path() if partners else None
    engines = {
        name: _engine_config(
            config,
            checkpoint,
            core,
            "kv_both",
            address,
            borrowed=cores[partners[name]] if name in partners else None,
            core_board=board,
        ).model_copy(
            update={
                "max_num_batched_tokens": chunk,
                "leads_shared_cores": name in partners and roles[name] is Role.PREFILL,
                "lead_share": config.prefill_core_share,
            }
        )
        for name, core in cores.items()
    }
    # The pages' shape; each instance takes their dtype from its own engine.
    layout = PageLayout(
        num_layers=checkpoint.num_layers,
        num_kv_heads=checkpoint.num_kv_heads,
        head_dim=checkpoint.head_dim,
        block_size=engines["prefill-0"].block_size,
    )
    # Instances spread over the nodes that offer what their role claims (scaling out); a
    # prefill and a decode that share their cores go to one node together (`homes`).
    instances = {
        name: _actor(
            ServingInstance,
            name,
            config.placed(role.value, engine_gpus),
            restarts=RESTARTS,
            scheduling_strategy=_where(homes.get(name)),
        ).remote(
            name,
            role.value,
            engines[name],
            model,
            address,
            layout,
            config.scheduling,
            chunk,
            store,
            metrics_port=ports.get(name),
        )
        for name, role in roles.items()
    }
    ray.get([h.load_report.remote() for h in instances.values()])
    scheduling = config.scheduling
    infrastructure = {"switch-0": switch, "adapter-store": store, **nodes}
    scheduler = _actor(
        GlobalScheduler,
        "global-scheduler",
        config.placed("scheduler"),
        restarts=RESTARTS,
        retried=True,
    ).remote(
        instances,
        {name: role.value for name, role in roles.items()},
        max_outstanding=config.max_outstanding,
        max_queued_per_instance=scheduling.max_queued_per_instance,
        infrastructure=infrastructure,
        metrics_port=ports.get("global-scheduler"),
        flip_idle_rounds=scheduling.flip_idle_rounds if scheduling.flip else None,
        kv_secret=secret,
        model_id=str(checkpoint.model_dir),
    )
    return DisaggregatedPath(scheduler, instances, str(checkpoint.model_dir), infrastructure)


def _where(node: str | None) -> Any:
    """Ray's scheduling strategy for an actor: on `node` while it has room, or spread."""
    if node is None:
        return "SPREAD"
    return NodeAffinitySchedulingStrategy(node, soft=True)


def memory_node_name(index: int) -> str:
    return f"memory-{index}"


def shut_down(config: DeploymentConfig, app_name: str | None = None) -> None:
    """Stops the deployment this process serves: first the memory nodes' arenas go
    (`_close_memory_nodes`), then Serve, then this process's part in Ray (its actors with
    it). `app_name`: on a cluster this process joined, only that Serve application goes,
    and Serve keeps serving whatever else it serves; None: all of Serve."""
    _close_memory_nodes(config)
    if app_name is None:
        serve.shutdown()
    else:
        serve.delete(app_name)
    ray.shutdown()


@contextlib.contextmanager
def deployed_on_cluster(config: DeploymentConfig, app_name: str, port: int) -> Iterator[str]:
    """`config` deployed as Serve application `app_name` on the cluster this process joined,
    under its own route, beside whatever else that Serve serves (on `port` if Serve is not
    running yet); yields its base URL. Afterwards the application and its actors (this
    process's Ray namespace's named actors) go, and the cluster stays up."""
    from ray.serve.context import _get_global_client

    serve.start(http_options={"host": "127.0.0.1", "port": port})
    port = _get_global_client().http_config.port  # a Serve already running keeps its own
    route = f"/{app_name}"
    serve.run(build_app(config), name=app_name, route_prefix=route)
    try:
        yield f"http://127.0.0.1:{port}{route}"
    finally:
        _close_memory_nodes(config)
        serve.delete(app_name)
        for actor in ray.util.list_named_actors():
            ray.kill(ray.get_actor(actor))


def _close_memory_nodes(config: DeploymentConfig) -> None:
    """Each memory node gives its shared arena back, so that a clean stop leaves nothing in
    /dev/shm (a memory node that does not answer leaves its arena to the next memory node's
    sweep, actors/kv/arena.py)."""
    for index in range(config.memory_nodes):
        with contextlib.suppress(ValueError, ray.exceptions.RayError):
            node = ray.get_actor(memory_node_name(index))  # ValueError: none of that name
            ray.get(node.close.remote(), timeout=RELEASE_TIMEOUT_S)


def _ship(model_dir: Path) -> ShippedModel:
    """The checkpoint, reachable from every node (actors/model_shipping.py): its holder runs
    on this node, where the directory is, and lives as the deployment's other actors do."""
    lifetime = "detached" if _DETACHED else None
    return hold_here(model_dir, name=HOLDER_NAME, lifetime=lifetime, max_restarts=RESTARTS)


def build_app(config: DeploymentConfig) -> serve.Application:
    config = config.on_cluster(ray.cluster_resources().get("GPU", 0.0))
    model_dir = config.model_dir if config.model_dir is not None else ensure_model("tiny")
    checkpoint = inspect_checkpoint(model_dir)
    model = _ship(checkpoint.model_dir)
    store = _adapter_store(config, checkpoint, model)
    builder = _colocated_path if config.colocated else _disaggregated_path
    path = builder(config, checkpoint, model, store)
    max_model_len = min(config.max_model_len, checkpoint.max_model_len)
    options = config.placed("ingress").ray_options()
    return OpenAIIngress.options(ray_actor_options=options).bind(
        path, model, max_model_len, store, config.max_body_bytes
    )


def app_from_args(args: dict[str, Any]) -> serve.Application:
    """The application builder named in deploy/serve_config.yaml."""
    global _DETACHED
    _DETACHED = True
    return build_app(DeploymentConfig(**args))
