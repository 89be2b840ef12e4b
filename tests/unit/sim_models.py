"""Cost models the simulator's tests work their cases out by hand on."""

from __future__ import annotations

from cluster.sim.cost_model import CostModel, DecodeStep, KVTransfer, NarrowCost, PassTable


def linear_model(capacity: int = 100_000, narrow: NarrowCost | None = None) -> CostModel:
    """Prefill 10 ms per token, decode steps of 100 ms, KV reads of 0.5 s (on all cores)."""
    return CostModel(
        name="linear",
        source="test",
        prefill=PassTable((1, 1000), (0.01, 10.0)),
        decode=DecodeStep(base_s=0.1, per_sequence_s=0.0, per_context_token_s=0.0),
        kv_transfer=KVTransfer(block_tokens=16, setup_s=0.5, per_page_s=0.0),
        kv_capacity_tokens=capacity,
        max_num_seqs=8,
        max_model_len=1024,
        chunk_tokens=100,
        narrow=narrow,
    )
