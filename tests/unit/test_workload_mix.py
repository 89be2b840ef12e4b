"""The shared definitions of the five workloads: threshold, ranges and kinds."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from cluster.workload_mix import (
    HEAVY_DECODE,
    KINDS,
    LIGHT_DECODE,
    LIGHT_PROMPT_MIN,
    MODEL_LEN_MARGIN,
    WORKLOADS,
    PromptRanges,
    check_output_range,
    heavy_decode_threshold,
    kinds_for,
    prompt_ranges,
    split,
)


def test_the_threshold_is_the_middle_of_the_gap() -> None:
    assert heavy_decode_threshold(LIGHT_DECODE, HEAVY_DECODE) == 64
    assert heavy_decode_threshold((8, 128), (129, 512)) == 128
    assert heavy_decode_threshold((8, 40), (41, 50)) == 40


@pytest.mark.parametrize(
    ("light", "heavy"), [((8, 100), (96, 192)), ((8, 32), (32, 64)), ((0, 32), (96, 192))]
)
def test_overlapping_or_empty_ranges_have_no_threshold(
    light: tuple[int, int], heavy: tuple[int, int]
) -> None:
    with pytest.raises(ValueError):
        heavy_decode_threshold(light, heavy)


def test_an_output_range_starts_at_one_and_is_not_empty() -> None:
    check_output_range("light decode", (1, 1))
    with pytest.raises(ValueError, match="light decode output range"):
        check_output_range("light decode", (5, 4))


def test_split_cuts_contiguous_parts_covering_the_range() -> None:
    assert split((8, 32), 2) == [(8, 19), (20, 32)]
    assert split((96, 192), 2) == [(96, 143), (144, 192)]
    assert split((1, 10), 3) == [(1, 3), (4, 6), (7, 10)]
    parts = split((129, 512), 5)
    assert parts[0][0] == 129 and parts[-1][1] == 512
    assert all(left[1] + 1 == right[0] for left, right in itertools.pairwise(parts))


def test_a_range_too_narrow_to_split_goes_whole_to_each_part() -> None:
    assert split((5, 5), 2) == [(5, 5), (5, 5)]
    assert split((5, 6), 3) == [(5, 6)] * 3
    assert split((5, 7), 3) == [(5, 5), (6, 6), (7, 7)]


def test_prompt_ranges_split_at_chunk_size_and_fit_the_model() -> None:
    assert prompt_ranges(64, 1024, 192) == PromptRanges(light=(16, 64), heavy=(65, 184))
    tight = prompt_ranges(64, 300, 192)
    assert tight.heavy == (65, 300 - 192 - MODEL_LEN_MARGIN)
    assert tight.light == (LIGHT_PROMPT_MIN, 64)


def test_prompt_ranges_name_what_is_too_small() -> None:
    with pytest.raises(ValueError, match="chunk_tokens 31 is below 32"):
        prompt_ranges(2 * LIGHT_PROMPT_MIN - 1, 1024, 192)
    with pytest.raises(ValueError, match=r"no room for a heavy prompt.*= 264"):
        prompt_ranges(64, 64 + 192 + MODEL_LEN_MARGIN, 192)


def test_a_single_kind_workload_draws_nothing() -> None:
    rng = random.Random(0)
    state = rng.getstate()
    assert kinds_for("HPLD", 3, rng) == ["HPLD"] * 3
    assert rng.getstate() == state


def test_mixed_is_a_shuffled_quarter_of_each_kind() -> None:
    kinds = kinds_for("Mixed", 40, random.Random(0))
    assert Counter(kinds) == dict.fromkeys(KINDS, 10)
    assert kinds != [KINDS[i % 4] for i in range(40)]
    assert kinds == kinds_for("Mixed", 40, random.Random(0))
    uneven = Counter(kinds_for("Mixed", 6, random.Random(1)))
    assert uneven == {"LPLD": 2, "LPHD": 2, "HPLD": 1, "HPHD": 1}


def test_an_unknown_workload_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'LPMD'") as error:
        kinds_for("LPMD", 4, random.Random(0))
    assert all(name in str(error.value) for name in WORKLOADS)
