"""The LoRA profile's probes and fits, on hand-made step times: the rank mixes timed at one
batch size, and fits that recover a padded line, leaving the no-LoRA steps out of it."""

from __future__ import annotations

import json

import pytest

from deploy.sim_lora_profile_cmd import _fits, rank_mixes


def test_each_batch_size_is_timed_at_lowest_highest_mixed_and_no_rank() -> None:
    assert rank_mixes(3, [8, 16, 64]) == {
        "r8": (8, 8, 8),
        "r64": (64, 64, 64),
        "mixed": (8, 16, 64),
        "none": (0, 0, 0),
    }


def test_fits_recover_a_padded_line_and_the_prefill_line() -> None:
    samples = []
    for batch in (1, 2, 4):
        for mix, ranks in rank_mixes(batch, [8, 16, 32, 64]).items():
            padded = batch * max(ranks)
            step = 0.010 + 0.0001 * padded if mix != "none" else 0.5  # none: never fitted
            samples.append({"batch": batch, "mix": mix, "ranks": list(ranks), "step_s": step})
    fits = _fits(samples, [(16, 0.0116), (64, 0.0164), (256, 0.0356)])
    assert fits["padded"]["per_unit_s"] == pytest.approx(0.0001)
    assert fits["padded"]["base_s"] == pytest.approx(0.010)
    assert fits["padded"]["r2"] == pytest.approx(1.0)
    assert fits["unpadded"]["r2"] < fits["padded"]["r2"]
    assert fits["prefill"]["per_token_s"] == pytest.approx(0.0001)
    assert fits["prefill"]["base_s"] == pytest.approx(0.01)
    assert fits["no_lora_step_s"] == {"1": 0.5, "2": 0.5, "4": 0.5}


def test_sim_caraserve_compares_every_router_on_a_profile(tmp_path, capsys) -> None:
    from deploy.cli import main

    samples = []
    for batch in (1, 2, 4, 8):
        for mix, ranks in rank_mixes(batch, [8, 16, 32, 64]).items():
            padded = batch * max(ranks)
            step = 0.010 + 0.0001 * padded if mix != "none" else 0.010 + 0.0005 * batch
            samples.append({"batch": batch, "mix": mix, "ranks": list(ranks), "step_s": step})
    profile = tmp_path / "lora.json"
    profile.write_text(json.dumps(_fits(samples, [(16, 0.0116), (64, 0.0164)])))
    out = tmp_path / "routers.json"
    flags = ["--cost-model", str(profile), "--requests", "300", "--rate", "2", "--json", str(out)]
    with pytest.raises(SystemExit) as ended:
        main(["sim", "caraserve", *flags])
    assert ended.value.code == 0
    routers = json.loads(out.read_text())["routers"]
    assert set(routers) == {"rank_aware", "least_loaded", "random", "first_fit"}
    aware = routers["rank_aware"]["slo_attainment"]
    assert aware > routers["random"]["slo_attainment"]
    assert aware >= routers["least_loaded"]["slo_attainment"]
    assert "| rank_aware |" in capsys.readouterr().out
