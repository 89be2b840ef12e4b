"""Configuration validated at the boundary: what an engine and a deployment are made of.

Pydantic models with defaults that work on the embedded set-up (local Ray, the tiny model,
a 2-core CPU machine). Everything downstream receives these already validated.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

Device = Literal["auto", "cpu", "cuda"]


class EngineConfig(BaseModel):
    """One vLLM engine inside a prefill or decode instance."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_dir: Path
    device: Device = "auto"
    max_model_len: PositiveInt = 1024
    max_num_seqs: PositiveInt = 32
    max_num_batched_tokens: PositiveInt | None = None
    # CPU: KV cache size in GiB. GPU: ignored in favour of gpu_memory_utilization.
    kv_cache_gib: PositiveInt = 1
    gpu_memory_utilization: float = Field(default=0.5, gt=0.0, le=0.95)
    # KV block size in tokens; the CPU attention backend needs a multiple of 32.
    block_size: PositiveInt = 32
    enable_lora: bool = True
    max_lora_rank: PositiveInt = 64
    max_loras: PositiveInt = 4
    # CPU cores this engine's worker binds to, e.g. "0" or "0-1"; None lets vLLM choose.
    cpu_cores: str | None = None
    # CPU cores of a partner engine that this one also runs on, and the node's board that
    # says when each engine is busy (actors/engine/core_share.py). The leading engine (the
    # prefill) runs on its partner's cores at every step, ahead of it; the other (the
    # decode) yields its own cores to it and borrows the leader's only while it is idle.
    borrowed_cores: str | None = None
    core_board: Path | None = None
    leads_shared_cores: bool = False
    # A leading engine runs on its partner's cores for at most this share of any second.
    lead_share: float = Field(default=1.0, gt=0.0, le=1.0)
    enforce_eager: bool = True
    seed: int = 0
    # How long vLLM's processes busy-poll their queues after the last message before they
    # sleep (actors/engine/vllm_busy_poll.py; vLLM's own default is 1000 ms); None keeps vLLM's.
    busy_poll_ms: NonNegativeInt | None = 1
    # vLLM kv_transfer_config as a plain dict (KV connector for disaggregation).
    kv_transfer: dict | None = None


class SchedulingConfig(BaseModel):
    """The scheduling plane's policies (see cluster/ for each one) and their knobs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Prefill queue order and how many queued requests are sorted together (PrefillSchedBatch).
    prefill_policy: Literal["fcfs", "sjf", "ljf"] = "fcfs"
    prefill_sched_batch: PositiveInt = 16
    # Decode dispatcher on each prefill instance, and admission on each decode instance.
    dispatcher: Literal["least_work", "power_of_two", "random", "least_loaded"] = "least_work"
    admission: Literal["greedy", "reserve_static", "reserve_dynamic"] = "reserve_dynamic"
    # Output-length buckets of the predictor: [0, g), [g, 2g), ... the last one open.
    length_granularity: PositiveInt = 32
    length_buckets: PositiveInt = 8
    # A ShareGPT-format JSON file to train the length predictor on before serving.
    length_train_file: Path | None = None
    # Predicted output above this many tokens makes a decode heavy.
    heavy_decode_tokens: PositiveInt = 64
    # Instance flip: after this many idle monitor rounds (of 0.25 s) while the other role is
    # busy.
    flip: bool = True
    flip_idle_rounds: PositiveInt = 20
    # A decode stream sends what its engine made within an interval as one message (the
    # first token alone, at once). Each message costs the decode actor, Ray, the Serve
    # ingress and proxy together some 2 ms of CPU, more than a decode step of a small model,
    # so a decode instance's running streams share `stream_messages_per_s` (a lone stream
    # sends every step or two) and none waits more than `stream_interval_ms`. On 2 cores,
    # small model, 48 requests of 96-192 output tokens at 4 req/s, sampled: 40 messages a
    # second, up to 500 ms, against 150 and 100 ms, cut the CPU the path took besides the
    # engines from 28 to 19 s and mean TTFT from 1,101 to 723 ms, mean JCT 25.5 to 20.4 s.
    stream_interval_ms: int = Field(default=500, ge=0, le=2000)
    stream_messages_per_s: PositiveInt = 40
    seed: int = 0
    # Requests one instance of a role may hold waiting (a prefill instance's queue; a decode
    # instance's admission and engine queue). Once every reachable instance of a role holds
    # this many, new requests are refused with a 429 and Retry-After.
    max_queued_per_instance: PositiveInt = 128
    # How long a request's KV pages stay pinned for its decode instance, unless released
    # earlier; a decode that starts later recomputes the prompt.
    kv_lease_ttl_s: float = Field(default=30.0, gt=0)


PlacedRole = Literal[
    "prefill", "decode", "memory_node", "switch", "adapter_store", "scheduler", "ingress"
]


class RolePlacement(BaseModel):
    """The Ray resources each actor of one role claims, which decide the nodes it may run
    on: logical CPUs and GPUs, and custom resources (a node started with
    `--resources '{"NAME": 1}'` offers NAME)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_cpus: float = Field(default=0.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    resources: dict[str, float] = Field(default_factory=dict)

    def ray_options(self) -> dict[str, object]:
        """As Ray's actor options take it."""
        return {
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "resources": dict(self.resources),
        }


class DeploymentConfig(BaseModel):
    """A whole tetriserve deployment: where it listens and what it is made of."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_dir: Path | None = None  # None: the built-in tiny model, made on first use
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    grpc_port: int = Field(default=9000, ge=1, le=65535)
    max_model_len: PositiveInt = 1024
    kv_cache_gib: PositiveInt = 1
    device: Device = "auto"
    prefill: PositiveInt = 1
    decode: PositiveInt = 1
    memory_nodes: PositiveInt = 1
    # True: one engine runs whole requests (no disaggregation), as plain vLLM would.
    colocated: bool = False
    # CPU engines: prefill instance i and decode instance i share their two cores, the
    # prefill first (actors/engine/core_share.py), but on the decode's core for at most
    # `prefill_core_share` of any second, so that a prefill backlog cannot starve decodes.
    # On 2 cores (small model, sampled, bench workloads), 0.5 against 1: mean JCT 1.03x
    # against 1.35x of vLLM's in HPLD, 1.36x against 1.68x in HPHD; TTFT alike in both.
    share_cores: bool = True
    prefill_core_share: float = Field(default=0.5, gt=0.0, le=1.0)
    max_outstanding: PositiveInt = 256
    # Largest request body the front door reads; a larger one is refused with a 413.
    max_body_bytes: PositiveInt = 4 * 2**20
    # Sequences an engine runs at once; None: 16 per core for CPU engines (the batch of
    # plain vLLM's 32 sequences on 2 cores), EngineConfig's default on GPUs. Under more load
    # than that, requests wait their turn in the engine's queue, first come first served,
    # rather than stretching every running one.
    max_num_seqs: PositiveInt | None = None
    # The folder (on the node that builds the deployment) that /v1/load_lora_adapter paths
    # must lie under; None: the model's adapters/ folder.
    lora_root: Path | None = None
    # Base port of the per-actor Prometheus exporters (see actors/metrics.py); None: off.
    metrics_port: int | None = Field(default=9400, ge=1, le=65000)
    # Tokens per prefill forward pass (ChunkSize); None: profiled at start-up (the knee).
    chunk_tokens: PositiveInt | None = None
    scheduling: SchedulingConfig = SchedulingConfig()
    # Per role, the resources its actors claim (`placed`); a role not named claims nothing
    # but, with CUDA engines, a GPU per serving instance.
    placement: dict[PlacedRole, RolePlacement] = Field(default_factory=dict)

    def placed(self, role: PlacedRole, engine_gpus: float = 0.0) -> RolePlacement:
        """What each actor of `role` claims. Engines bind their own cores (no logical CPU is
        claimed by default: a small machine could not start them all otherwise); a serving
        instance with a CUDA engine claims `engine_gpus` (`gpus_per_engine`), so that Ray
        hands each engine a GPU of its own, or its share of one."""
        if role in self.placement:
            return self.placement[role]
        if role in ("prefill", "decode"):
            return RolePlacement(num_gpus=engine_gpus)
        return RolePlacement()

    def on_cluster(self, cluster_gpus: float) -> DeploymentConfig:
        """This deployment with device "auto" decided for the cluster, not for the machine
        that builds it (a KubeRay head has no GPU): CUDA where the cluster offers GPUs."""
        if self.device != "auto":
            return self
        return self.model_copy(update={"device": "cuda" if cluster_gpus > 0 else "cpu"})

    def gpus_per_engine(self, cluster_gpus: float) -> float:
        """A GPU per serving engine while the cluster has enough, else an equal share."""
        engines = self.prefill + self.decode
        return min(1.0, cluster_gpus / engines)

    def core_partners(self, cpu_engines: bool) -> dict[str, str]:
        """Instance → the partner whose core it also runs on: prefill i and decode i, both
        ways."""
        if not (self.share_cores and cpu_engines):
            return {}
        pairs = {f"decode-{i}": f"prefill-{i}" for i in range(min(self.prefill, self.decode))}
        return pairs | {prefill: decode for decode, prefill in pairs.items()}

    def pair_nodes(
        self, nodes: Mapping[str, Mapping[str, float]], engine_gpus: float, cpu_engines: bool
    ) -> dict[str, str]:
        """Instance → the node it goes to, for the prefill/decode pairs that share their
        cores (so must share a node): pair i on the i-th, round-robin, of the nodes (node id
        → the Ray resources it offers) that offer what both members claim. Empty where no
        node does, or nothing is paired: those instances are left to spread."""
        partners = self.core_partners(cpu_engines)
        need: dict[str, float] = {}
        for role in ("prefill", "decode"):
            placed = self.placed(role, engine_gpus)
            claims = {**placed.resources, "CPU": placed.num_cpus, "GPU": placed.num_gpus}
            for name, amount in claims.items():
                need[name] = need.get(name, 0.0) + amount
        fitting = sorted(
            node
            for node, offered in nodes.items()
            if all(offered.get(name, 0.0) >= amount for name, amount in need.items() if amount)
        )
        if not (partners and fitting):
            return {}
        return {name: fitting[int(name.rsplit("-", 1)[1]) % len(fitting)] for name in partners}

    def engine_cores(self, homes: Mapping[str, str]) -> dict[str, int]:
        """Instance → its core number on its node (modulo the node's cores where it runs):
        the pairs placed on one node (`homes`, from `pair_nodes`) take two cores each, in
        order; every other engine the next core after them."""
        cores: dict[str, int] = {}
        slots: dict[str, int] = {}  # node -> pairs placed there so far
        for name in sorted(n for n in homes if n.startswith("prefill-")):
            decode = name.replace("prefill-", "decode-")
            slot = slots.get(homes[name], 0)
            slots[homes[name]] = slot + 1
            cores[name], cores[decode] = 2 * slot, 2 * slot + 1
        others = [name for name in self.instance_roles() if name not in cores]
        first = max(cores.values(), default=-1) + 1
        return cores | {name: first + i for i, name in enumerate(others)}

    def instance_roles(self) -> dict[str, str]:
        """Every serving instance's name and starting role ("prefill" or "decode")."""
        roles = {f"prefill-{i}": "prefill" for i in range(self.prefill)}
        return roles | {f"decode-{i}": "decode" for i in range(self.decode)}
