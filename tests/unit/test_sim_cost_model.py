"""Engine cost models: the data files load, say their source, and price passes as documented."""

from __future__ import annotations

import pytest

from cluster.sim.cost_model import (
    CostModel,
    DecodeSample,
    DecodeStep,
    KVTransfer,
    PassTable,
    builtin_cost_models,
    cost_model_from_dict,
    cost_model_to_dict,
    fit_decode_step,
    load_cost_model,
)


def test_builtin_files_load_with_a_source_and_a_chunk_size() -> None:
    names = builtin_cost_models()
    assert {"opt13b_tetriinfer", "small_2cpu"} <= set(names)
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


def test_a_decode_step_is_fitted_back_from_steps_it_priced() -> None:
    truth = DecodeStep(base_s=0.03, per_sequence_s=0.0006, per_context_token_s=2e-6)
    samples = [
        DecodeSample(batch, context, truth.seconds_for(batch, batch * context))
        for batch in (1, 4, 16, 32)
        for context in (64, 512)
    ]
    fitted, r2 = fit_decode_step(samples)
    assert fitted.base_s == pytest.approx(truth.base_s, rel=1e-6)
    assert fitted.per_sequence_s == pytest.approx(truth.per_sequence_s, rel=1e-6)
    assert fitted.per_context_token_s == pytest.approx(truth.per_context_token_s, rel=1e-6)
    assert r2 == pytest.approx(1.0)


def test_a_fitted_decode_step_costs_nothing_below_zero_and_says_how_well_it_fits() -> None:
    # Steps that grow with the batch but shrink with context: no physical cost does that.
    samples = [DecodeSample(1, 64, 0.012), DecodeSample(8, 64, 0.030), DecodeSample(8, 512, 0.020)]
    fitted, r2 = fit_decode_step(samples)
    assert min(fitted.base_s, fitted.per_sequence_s, fitted.per_context_token_s) >= 0
    assert r2 < 1.0
    with pytest.raises(ValueError, match="3 samples"):
        fit_decode_step(samples[:2])


def test_a_cost_model_written_as_a_dict_reads_back_the_same() -> None:
    model = load_cost_model("small_2cpu")
    payload = cost_model_to_dict(model, device="2 CPU cores", decode_fit_r2=0.97)
    assert payload["device"] == "2 CPU cores" and payload["decode_fit_r2"] == 0.97
    assert cost_model_from_dict(payload) == model
