"""Configuration validated at the boundary: what an engine and a deployment are made of.

Pydantic models with defaults that work on the embedded set-up (local Ray, the tiny model,
a 2-core CPU machine). Everything downstream receives these already validated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

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
    enforce_eager: bool = True
    seed: int = 0
    # vLLM kv_transfer_config as a plain dict (KV connector for disaggregation).
    kv_transfer: dict | None = None


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
    max_outstanding: PositiveInt = 256
    # Base port of the per-actor Prometheus exporters (see actors/metrics.py); None: off.
    metrics_port: int | None = Field(default=9400, ge=1, le=65000)
    # Tokens per prefill forward pass (ChunkSize); None keeps the engine's own budget.
    chunk_tokens: PositiveInt | None = None
