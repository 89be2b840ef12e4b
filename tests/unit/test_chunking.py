"""ChunkSize: the probe sizes and the knee of prefill throughput."""

from __future__ import annotations

import pytest

from cluster.chunking import PROBE_TOKENS, find_knee, probe_sizes


def test_knee_is_first_size_within_fraction_of_best_throughput() -> None:
    # Throughput (tokens/s): 1600, 3200, 6000, 9500, 10000, 10100 -> 90% of best is 9090.
    samples = [
        (16, 0.01),
        (32, 0.01),
        (64, 64 / 6000),
        (128, 128 / 9500),
        (256, 256 / 10000),
        (512, 512 / 10100),
    ]
    assert find_knee(samples) == 128
    assert find_knee(samples, fraction=0.99) == 256
    assert find_knee(samples, fraction=1.0) == 512


def test_knee_ignores_sample_order_and_keeps_best_repeat() -> None:
    samples = [(512, 0.05), (64, 0.1), (64, 0.0065), (128, 0.0125)]
    # Best throughput 10240 (512); 64 tokens reach 9846 on their faster repeat.
    assert find_knee(samples) == 64


def test_knee_past_a_throughput_dip_still_picks_the_smallest_qualifying_size() -> None:
    samples = [(16, 0.016), (32, 0.0033), (64, 0.1), (128, 0.128)]
    assert find_knee(samples) == 32


@pytest.mark.parametrize(
    "samples",
    [[], [(0, 1.0)], [(16, 0.0)], [(16, -1.0)], [(-16, 1.0)]],
)
def test_knee_rejects_empty_or_non_positive_samples(samples: list[tuple[int, float]]) -> None:
    with pytest.raises(ValueError):
        find_knee(samples)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_knee_rejects_fractions_outside_unit_interval(fraction: float) -> None:
    with pytest.raises(ValueError):
        find_knee([(16, 1.0)], fraction)


def test_probe_sizes_stop_at_the_engine_budget() -> None:
    assert probe_sizes(100) == [16, 32, 64]
    assert probe_sizes(128) == [16, 32, 64, 128]
    assert probe_sizes(10**6) == list(PROBE_TOKENS)
    assert probe_sizes(8) == [16]
    with pytest.raises(ValueError):
        probe_sizes(0)
