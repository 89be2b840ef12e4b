"""Engine cost models: the data files load, say their source, and price passes as documented."""

from __future__ import annotations

import pytest

from cluster.sim.cost_model import (
    CostModel,
    DecodeStep,
    KVTransfer,
    PassTable,
    builtin_cost_models,
    load_cost_model,
)


def test_builtin_files_load_with_a_source_and_a_chunk_size() -> None:
    names = builtin_cost_models()
    assert {"opt13b_tetriinfer", "small_cpu_placeholder"} <= set(names)
    for name in names:
        model = load_cost_model(name)
        assert model.source.strip()
        assert 0 < model.chunk_tokens <= model.max_model_len


def test_the_opt13b_prefill_table_has_the_papers_knee() -> None:
    model = load_cost_model("opt13b_tetriinfer")
    assert model.prefill.knee() == 512 == model.chunk_tokens


def test_pass_table_interpolates_and_extends_its_last_segment() -> None:
    table = PassTable((10, 20), (1.0, 3.0))
    assert table.seconds_for(0) == 0.0
    assert table.seconds_for(15) == pytest.approx(2.0)
    assert table.seconds_for(30) == pytest.approx(5.0)


def test_a_mixed_step_reads_the_weights_once() -> None:
    model = CostModel(
        name="t",
        source="test",
        prefill=PassTable((1, 100), (0.01, 1.0)),
        decode=DecodeStep(base_s=0.1, per_sequence_s=0.01, per_context_token_s=0.001),
        kv_transfer=KVTransfer(block_tokens=16, setup_s=0.5, per_page_s=0.25),
        kv_capacity_tokens=1000,
        max_num_seqs=8,
        max_model_len=512,
        chunk_tokens=100,
    )
    assert model.decode_step_s(2, 100) == pytest.approx(0.1 + 0.02 + 0.1)
    assert model.mixed_step_s(50, 2, 100) == pytest.approx(0.5 + 0.02 + 0.1)
    assert model.mixed_step_s(50, 0, 0) == pytest.approx(0.5)
    assert model.kv_transfer_s(17) == pytest.approx(0.5 + 2 * 0.25)
