"""`bench workloads` learns tetriserve's ChunkSize before the deployment starts, through
the same shipped checkpoint and profile cache the deployment uses: a profile cached for
the prefill engine's settings is the answer, with no engine started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray

from actors.instances import chunk_profiler
from cluster.checkpoint import inspect_checkpoint
from deploy import bench_workloads
from deploy.app_builder import _engine_config
from deploy.cli import build_parser

pytestmark = pytest.mark.actors


def test_the_cached_profile_of_the_prefill_engine_is_the_chunk_size(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETRISERVE_HOME", str(tmp_path))
    args = build_parser().parse_args(["bench", "workloads", "--model", str(tiny_model)])
    config = bench_workloads._deployment(args, tiny_model, None)
    engine = _engine_config(config, inspect_checkpoint(tiny_model), 0, None, "")
    cached = chunk_profiler._cache_path(engine)
    cached.parent.mkdir(parents=True)
    cached.write_text(json.dumps({"chunk_tokens": 96, "samples": []}))
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        assert bench_workloads._profiled_chunk_tokens(args, tiny_model) == 96
    finally:
        ray.shutdown()
