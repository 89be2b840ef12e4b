"""What a forward pass costs: the engine cost model the simulator prices every step with.

On the live request path these are the times an instance's vLLM engine spends: a prefill
pass over a ChunkSize chunk of prompt tokens, a decode step over the running batch, and the
KV read a decode instance makes from a memory node before it continues a request. A cost
model is data: a JSON file under `cluster/sim/costs/` (its `source` says where the numbers
come from), loaded by `load_cost_model`.

- `prefill`: seconds of one forward pass against the tokens in it, a table interpolated
  linearly (and extended along its last segment). Its knee, found by the same
  `cluster.chunking.find_knee` the live profiler uses, is the model's ChunkSize unless the
  file names one.
- `decode`: one decode step = `base_s + per_sequence_s * batch + per_context_token_s *
  context tokens` (weights read once, per-sequence compute, attention over the KV held).
- A mixed step (colocated engines: decodes riding along a prefill chunk) costs the prefill
  pass plus the decode step less one `base_s`: the weights are read once.
- `kv_transfer`: `setup_s + pages * per_page_s`, pages of `block_tokens` tokens; the file
  derives its per-page time from the fpga_models' figures (they may not be imported here).
- `lora` (optional): adapter cost figures, kept for the LoRA router; not used yet.
- `narrow` (optional, CPU engines that share a node's cores): how many times as long a
  prefill pass and a decode step take on an engine's home core alone as on all of the
  node's cores (cluster/sim/core_pair.py).

`tetriserve sim profile` measures the live engine and writes such a file: the prefill
table as ChunkSize profiling measures it, and the decode step fitted to measured steps
(`fit_decode_step`, with its R²).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls

from cluster.chunking import find_knee

COSTS_DIR = Path(__file__).with_name("costs")


@dataclass(frozen=True, slots=True)
class PassTable:
    """Seconds of a forward pass at each tokens-per-pass point, in increasing token order."""

    tokens: tuple[int, ...]
    seconds: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.tokens) < 2 or len(self.tokens) != len(self.seconds):
            raise ValueError("a pass table needs at least two (tokens, seconds) points")
        if list(self.tokens) != sorted(set(self.tokens)) or min(self.tokens) < 1:
            raise ValueError(f"pass table tokens must be positive and increasing: {self.tokens}")
        if min(self.seconds) <= 0:
            raise ValueError("pass table seconds must be positive")

    def seconds_for(self, tokens: int) -> float:
        """Linear between the points, along the nearest segment outside them; 0 for none."""
        if tokens <= 0:
            return 0.0
        index = min(max(bisect.bisect_left(self.tokens, tokens), 1), len(self.tokens) - 1)
        t0, t1 = self.tokens[index - 1], self.tokens[index]
        s0, s1 = self.seconds[index - 1], self.seconds[index]
        return max(s0 + (s1 - s0) * (tokens - t0) / (t1 - t0), 0.0)

    def knee(self) -> int:
        """The smallest tokens per pass within 90% of the best throughput (ChunkSize)."""
        return find_knee(list(zip(self.tokens, self.seconds, strict=True)))


@dataclass(frozen=True, slots=True)
class DecodeStep:
    base_s: float
    per_sequence_s: float
    per_context_token_s: float

    def seconds_for(self, batch: int, context_tokens: int) -> float:
        if batch <= 0:
            return 0.0
        return self.base_s + self.per_sequence_s * batch + self.per_context_token_s * context_tokens


@dataclass(frozen=True, slots=True)
class DecodeSample:
    """One measured decode step: `batch` sequences of `context_tokens` each took `seconds`."""

    batch: int
    context_tokens: int
    seconds: float


def fit_decode_step(samples: Sequence[DecodeSample]) -> tuple[DecodeStep, float]:
    """The `DecodeStep` that fits `samples` best (least squares over batch and the batch's
    context tokens, no cost below zero), and its R²."""
    if len(samples) < 3:
        raise ValueError(f"fitting a decode step needs at least 3 samples, got {len(samples)}")
    design = np.array([[1.0, s.batch, s.batch * s.context_tokens] for s in samples])
    measured = np.array([s.seconds for s in samples])
    coefficients, _ = nnls(design, measured)
    base, per_sequence, per_context = coefficients
    residual = measured - design @ coefficients
    spread = float(np.sum((measured - measured.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual**2)) / spread if spread > 0 else 1.0
    return DecodeStep(float(base), float(per_sequence), float(per_context)), r2


@dataclass(frozen=True, slots=True)
class KVTransfer:
    block_tokens: int
    setup_s: float
    per_page_s: float

    def seconds_for(self, tokens: int) -> float:
        pages = -(-tokens // self.block_tokens)
        return self.setup_s + pages * self.per_page_s


@dataclass(frozen=True, slots=True)
class NarrowCost:
    """Pass time on an engine's home core alone, as a multiple of its time on all cores."""

    prefill: float
    decode: float


@dataclass(frozen=True, slots=True)
class CostModel:
    """One engine on one device: its step costs and its memory."""

    name: str
    source: str
    prefill: PassTable
    decode: DecodeStep
    kv_transfer: KVTransfer
    kv_capacity_tokens: int  # KV tokens one instance's cache holds
    max_num_seqs: int  # sequences one engine runs at once
    max_model_len: int
    chunk_tokens: int  # ChunkSize: tokens per prefill pass
    lora: dict[str, Any] | None = None
    narrow: NarrowCost | None = None

    def prefill_pass_s(self, tokens: int) -> float:
        return self.prefill.seconds_for(tokens)

    def decode_step_s(self, batch: int, context_tokens: int) -> float:
        return self.decode.seconds_for(batch, context_tokens)

    def mixed_step_s(self, prefill_tokens: int, batch: int, context_tokens: int) -> float:
        """A forward pass with `prefill_tokens` prompt tokens and `batch` decoding
        sequences holding `context_tokens` of KV."""
        if prefill_tokens <= 0:
            return self.decode_step_s(batch, context_tokens)
        decode = self.decode_step_s(batch, context_tokens)
        shared = self.decode.base_s if batch > 0 else 0.0
        return self.prefill_pass_s(prefill_tokens) + decode - shared

    def kv_transfer_s(self, tokens: int) -> float:
        return self.kv_transfer.seconds_for(tokens)


def cost_model_from_dict(data: dict[str, Any]) -> CostModel:
    prefill = PassTable(
        tuple(int(t) for t in data["prefill"]["tokens"]),
        tuple(float(s) for s in data["prefill"]["seconds"]),
    )
    decode = data["decode"]
    kv = data["kv_transfer"]
    return CostModel(
        name=str(data["name"]),
        source=str(data["source"]),
        prefill=prefill,
        decode=DecodeStep(
            float(decode["base_s"]),
            float(decode["per_sequence_s"]),
            float(decode["per_context_token_s"]),
        ),
        kv_transfer=KVTransfer(
            int(kv["block_tokens"]), float(kv["setup_s"]), float(kv["per_page_s"])
        ),
        kv_capacity_tokens=int(data["kv_capacity_tokens"]),
        max_num_seqs=int(data["max_num_seqs"]),
        max_model_len=int(data["max_model_len"]),
        chunk_tokens=int(data.get("chunk_tokens") or prefill.knee()),
        lora=data.get("lora"),
        narrow=NarrowCost(**data["narrow"]) if "narrow" in data else None,
    )


def cost_model_to_dict(model: CostModel, **extra: Any) -> dict[str, Any]:
    """`model` as its JSON file holds it (`cost_model_from_dict` reads it back); `extra`
    adds fields of record (the device, a fit's R²)."""
    decode, kv = model.decode, model.kv_transfer
    return {
        "name": model.name,
        "source": model.source,
        **extra,
        "max_model_len": model.max_model_len,
        "max_num_seqs": model.max_num_seqs,
        "kv_capacity_tokens": model.kv_capacity_tokens,
        "chunk_tokens": model.chunk_tokens,
        "prefill": {"tokens": list(model.prefill.tokens), "seconds": list(model.prefill.seconds)},
        "decode": {
            "base_s": decode.base_s,
            "per_sequence_s": decode.per_sequence_s,
            "per_context_token_s": decode.per_context_token_s,
        },
        "kv_transfer": {
            "block_tokens": kv.block_tokens,
            "setup_s": kv.setup_s,
            "per_page_s": kv.per_page_s,
        },
        **({"lora": model.lora} if model.lora is not None else {}),
        **({"narrow": asdict(model.narrow)} if model.narrow is not None else {}),
    }


def load_cost_model(name_or_path: str | Path) -> CostModel:
    """A cost model by file path, or by the name of a file in `cluster/sim/costs/`."""
    path = Path(name_or_path)
    if not path.exists():
        path = COSTS_DIR / f"{name_or_path}.json"
    return cost_model_from_dict(json.loads(path.read_text()))


def builtin_cost_models() -> list[str]:
    return sorted(path.stem for path in COSTS_DIR.glob("*.json"))
