"""Calibration of the hardware models: every figure, computed by running the models, lands
within 15% of the value measured on the hardware; the run is deterministic for a seed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from deploy import bench_hw
from fpga_models.figures import Figure, hardware_figures


@pytest.fixture(scope="module")
def figures() -> list[Figure]:
    return hardware_figures(seed=0)


def test_every_figure_is_within_15_percent_of_the_paper(figures: list[Figure]) -> None:
    off = [f"{f.name}: {f.model:.3f} vs {f.paper:.3f}" for f in figures if abs(f.ratio - 1) > 0.15]
    assert off == []
    assert len({figure.name for figure in figures}) == len(figures) >= 18


def test_figures_are_deterministic_for_a_seed(figures: list[Figure]) -> None:
    assert [figure.model for figure in hardware_figures(seed=0)] == [f.model for f in figures]


def test_tail_latency_comes_from_a_distribution(figures: list[Figure]) -> None:
    by_name = {figure.name: figure.model for figure in figures}
    assert by_name["clio read 16 B p99"] > by_name["clio read 16 B median"] * 1.1


def test_bench_hw_prints_and_writes_json(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    bench_hw.register(parser.add_subparsers(dest="bench"))
    out = tmp_path / "figures.json"
    args = parser.parse_args(["hw", "--json", str(out)])
    assert args.func(args) == 0
    rows = json.loads(out.read_text())
    assert {"name", "model", "paper", "ratio", "unit"} <= set(rows[0])
    assert "clio read 16 B median" in capsys.readouterr().out
