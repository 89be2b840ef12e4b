"""Zipf-like adapter popularity: shares that fall as 1/k**s, a sequence that is the same for
the same seed, and a most popular adapter that is not simply the first name."""

from __future__ import annotations

from collections import Counter

import pytest

from cluster.adapter_popularity import adapter_sequence, zipf_weights


def test_shares_fall_as_one_over_k_to_the_exponent() -> None:
    weights = zipf_weights(4, exponent=1.0)
    assert sum(weights) == pytest.approx(1.0)
    assert weights[0] / weights[1] == pytest.approx(2.0)
    assert weights[0] / weights[3] == pytest.approx(4.0)
    assert zipf_weights(3, exponent=0.0) == pytest.approx([1 / 3] * 3)


def test_a_sequence_is_skewed_and_reproducible() -> None:
    names = [f"a{i:03d}" for i in range(200)]
    sequence = adapter_sequence(names, 5000, exponent=1.0, seed=3)
    assert sequence == adapter_sequence(names, 5000, exponent=1.0, seed=3)
    assert sequence != adapter_sequence(names, 5000, exponent=1.0, seed=4)
    counts = Counter(sequence)
    share = counts.most_common(1)[0][1] / len(sequence)
    # The most popular of 200 takes 1/H(200) = 17% of requests; half are asked for rarely.
    assert 0.14 < share < 0.20
    assert sum(1 for name in names if counts[name] <= 10) > 100
    # Which adapter is most popular depends on the seed, not on the names' order.
    tops = {Counter(adapter_sequence(names, 500, seed=s)).most_common(1)[0][0] for s in range(8)}
    assert len(tops) > 1


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one adapter"):
        zipf_weights(0)
    with pytest.raises(ValueError, match="exponent"):
        zipf_weights(3, exponent=-1.0)
