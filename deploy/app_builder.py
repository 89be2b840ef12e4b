"""Builds the Serve application: the backend actors and the OpenAI ingress in front of them.

`build_app` is used by `tetriserve serve`; `app_from_args` is the Serve application builder
that `serve run deploy/serve_config.yaml` calls with the config file's `args`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray
from ray import serve

from actors.engine_instance import EngineInstance
from cluster.checkpoint import inspect_checkpoint
from cluster.config import DeploymentConfig, EngineConfig
from cluster.model_factory import ensure_model
from deploy.openai_app import OpenAIIngress

BACKEND_ACTOR_NAME = "tetriserve-backend"


def resolve_model_dir(config: DeploymentConfig) -> Path:
    return config.model_dir if config.model_dir is not None else ensure_model("tiny")


def build_app(config: DeploymentConfig) -> serve.Application:
    model_dir = resolve_model_dir(config)
    checkpoint = inspect_checkpoint(model_dir)
    max_model_len = min(config.max_model_len, checkpoint.max_model_len)
    adapters = {name: info.path for name, info in checkpoint.adapters.items()}
    engine = EngineConfig(
        model_dir=model_dir,
        device=config.device,
        max_model_len=max_model_len,
        kv_cache_gib=config.kv_cache_gib,
        max_lora_rank=max((a.rank for a in checkpoint.adapters.values()), default=8),
    )
    backend = (
        ray.remote(EngineInstance)
        .options(name=BACKEND_ACTOR_NAME, num_cpus=1, lifetime=None)
        .remote(engine, adapters)
    )
    ray.get(backend.ready.remote())
    return OpenAIIngress.options(ray_actor_options={"num_cpus": 0}).bind(
        backend, str(model_dir), max_model_len, sorted(adapters)
    )


def app_from_args(args: dict[str, Any]) -> serve.Application:
    return build_app(DeploymentConfig(**args))
