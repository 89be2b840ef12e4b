"""A vLLM plugin that records every LoRA adapter an engine loads from its files: a cold start.

vLLM's workers load an adapter's weights the first time a batch needs it and again after
their LRU cache (max_cpu_loras) let it go; nothing in vLLM's metrics counts these loads.
Where `TETRISERVE_LORA_LOAD_LOG` names a file, this plugin, loaded in every vLLM process
through the `vllm.general_plugins` entry point, appends one JSON line per load to it:
`{"adapter", "seconds", "at", "pid"}` (`at`: Unix time at the end of the load). `tetriserve
bench lora` sets it for plain vLLM's server and for tetriserve's engines alike, so that
both systems' cold starts are counted the same way. Without the variable it does nothing.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Any

ENV_VAR = "TETRISERVE_LORA_LOAD_LOG"
_PATCHED_FLAG = "_tetriserve_lora_load_log"


def apply() -> None:
    path = os.environ.get(ENV_VAR)
    if not path:
        return
    from vllm.lora.worker_manager import WorkerLoRAManager

    if getattr(WorkerLoRAManager, _PATCHED_FLAG, False):
        return
    original = WorkerLoRAManager._load_adapter

    @functools.wraps(original)
    def logged(self: Any, lora_request: Any) -> Any:
        started = time.perf_counter()
        loaded = original(self, lora_request)
        record = {
            "adapter": lora_request.lora_name,
            "seconds": time.perf_counter() - started,
            "at": time.time(),
            "pid": os.getpid(),
        }
        with open(path, "a") as log:  # one short append per load: lines do not interleave
            log.write(json.dumps(record) + "\n")
        return loaded

    WorkerLoRAManager._load_adapter = logged
    setattr(WorkerLoRAManager, _PATCHED_FLAG, True)


def loads_between(path: Path, start: float, end: float) -> list[dict[str, Any]]:
    """The loads a log recorded from `start` to `end` (Unix times)."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [record for record in records if start <= record["at"] <= end]
