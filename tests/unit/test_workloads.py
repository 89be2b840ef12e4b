"""The request mixes of `tetriserve bench workloads`, counted with the built-in tokenizer."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from cluster.model_factory import ensure_model
from cluster.workload_mix import KINDS, LIGHT_PROMPT_MIN, MODEL_LEN_MARGIN, WORKLOADS
from deploy import workloads as wl

CHUNK = 64
MODEL_LEN = 1024
LIGHT = (8, 32)
HEAVY = (96, 192)
TH = wl.thresholds_for(CHUNK, LIGHT, HEAVY)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(str(ensure_model("tiny") / "tokenizer.json"))


@pytest.fixture(scope="module")
def count_tokens(tokenizer: Tokenizer) -> Callable[[str], int]:
    return lambda text: len(tokenizer.encode(text).ids)


def make(name: str, count: Callable[[str], int], **kwargs: int) -> list[wl.WorkloadRequest]:
    args = {"num_requests": 24, "chunk_tokens": CHUNK, "max_model_len": MODEL_LEN} | kwargs
    return wl.make_workload(name, count_tokens=count, **args)


def test_heavy_decode_threshold_splits_the_output_ranges() -> None:
    assert wl.Thresholds(chunk_tokens=CHUNK, heavy_decode_tokens=64) == TH
    th = wl.thresholds_for(CHUNK, (8, 40), (41, 50))
    assert th.heavy_decode_tokens == 40
    assert "64 tokens" in TH.describe() and "heavy decode" in TH.describe()
    with pytest.raises(ValueError):
        wl.thresholds_for(CHUNK, (8, 100), (96, 192))
    with pytest.raises(ValueError):
        wl.thresholds_for(CHUNK, (0, 32), (96, 192))


def test_family_ranges_cut_each_class_and_stay_on_its_side() -> None:
    ranges = wl.family_ranges(LIGHT, HEAVY)
    assert ranges == {"ask": (8, 19), "define": (20, 32), "story": (96, 143), "essay": (144, 192)}
    for family in wl.FAMILIES:
        low, high = ranges[family.name]
        assert (low > TH.heavy_decode_tokens) == family.heavy_decode
        assert (high > TH.heavy_decode_tokens) == family.heavy_decode


def test_families_have_their_own_words() -> None:
    assert len(wl.FAMILIES) >= 4
    assert {family.heavy_decode for family in wl.FAMILIES} == {False, True}
    words = [word for family in wl.FAMILIES for word in family.words]
    assert len(words) == len(set(words))
    assert all(len(family.words) >= 30 for family in wl.FAMILIES)


@pytest.mark.parametrize("name", KINDS)
def test_every_request_is_of_the_workloads_kind(
    name: str, count_tokens: Callable[[str], int]
) -> None:
    requests = make(name, count_tokens)
    assert len(requests) == 24
    assert {wl.kind_of(req, TH) for req in requests} == {name}
    assert all(req.prompt_tokens == count_tokens(req.prompt) for req in requests)
    light_floor = min(req.prompt_tokens for req in requests)
    assert light_floor >= LIGHT_PROMPT_MIN
    assert max(req.prompt_tokens for req in requests) <= 3 * CHUNK


def test_outputs_stay_in_their_familys_range(count_tokens: Callable[[str], int]) -> None:
    ranges = wl.family_ranges(LIGHT, HEAVY)
    for req in make("Mixed", count_tokens, num_requests=40):
        low, high = ranges[req.family]
        assert low <= req.output_tokens <= high
        assert req.prompt.startswith(next(f.opening for f in wl.FAMILIES if f.name == req.family))


def test_mixed_holds_each_kind_a_quarter(count_tokens: Callable[[str], int]) -> None:
    requests = make("Mixed", count_tokens, num_requests=40)
    kinds = [wl.kind_of(req, TH) for req in requests]
    assert Counter(kinds) == dict.fromkeys(KINDS, 10)
    assert kinds != [KINDS[i % 4] for i in range(40)]  # shuffled


def test_the_seed_decides_the_workload(count_tokens: Callable[[str], int]) -> None:
    first = make("Mixed", count_tokens, num_requests=12, seed=3)
    assert make("Mixed", count_tokens, num_requests=12, seed=3) == first
    assert make("Mixed", count_tokens, num_requests=12, seed=4) != first


def test_prompt_and_output_fit_in_max_model_len(count_tokens: Callable[[str], int]) -> None:
    tight = CHUNK + HEAVY[1] + MODEL_LEN_MARGIN + 12
    for name in ("HPHD", "HPLD", "Mixed"):
        for req in make(name, count_tokens, max_model_len=tight):
            assert req.prompt_tokens + req.output_tokens <= tight
            assert req.prompt_tokens > CHUNK or name == "Mixed"


def test_no_room_for_a_heavy_prompt_is_an_error(count_tokens: Callable[[str], int]) -> None:
    with pytest.raises(ValueError, match="no room"):
        make("LPLD", count_tokens, max_model_len=CHUNK + HEAVY[1] + MODEL_LEN_MARGIN)


def test_unknown_workload_names_the_valid_ones(count_tokens: Callable[[str], int]) -> None:
    with pytest.raises(ValueError, match="LPHD") as error:
        make("LPMD", count_tokens)
    assert all(name in str(error.value) for name in WORKLOADS)
    with pytest.raises(ValueError):
        make("LPLD", count_tokens, num_requests=0)


def test_dataset_round_trips_as_jsonl(tmp_path: Path, count_tokens: Callable[[str], int]) -> None:
    requests = make("Mixed", count_tokens, num_requests=8)
    path = wl.write_dataset(requests, tmp_path / "sub" / "mixed.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows == [{"prompt": r.prompt, "output_tokens": r.output_tokens} for r in requests]
    with pytest.raises(ValueError):
        wl.write_dataset(requests, tmp_path / "mixed.json")


def bags(samples: list[tuple[list[int], int]], vocab: int) -> np.ndarray:
    matrix = np.zeros((len(samples), vocab))
    for row, (ids, _) in enumerate(samples):
        np.add.at(matrix[row], ids, 1.0)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_a_bag_of_tokens_tells_the_families_apart(
    tokenizer: Tokenizer, count_tokens: Callable[[str], int]
) -> None:
    def encode(text: str) -> list[int]:
        return tokenizer.encode(text).ids

    vocab = tokenizer.get_vocab_size()
    train = make("Mixed", count_tokens, num_requests=40, seed=1)
    test = make("Mixed", count_tokens, num_requests=40, seed=2)
    train_samples = wl.family_samples(train, encode)
    assert train_samples[0] == (encode(train[0].prompt), train[0].output_tokens)
    train_bags, test_bags = bags(train_samples, vocab), bags(wl.family_samples(test, encode), vocab)
    names = [family.name for family in wl.FAMILIES]
    centroids = np.stack(
        [train_bags[[r.family == name for r in train]].mean(axis=0) for name in names]
    )
    guesses = [names[i] for i in np.argmax(test_bags @ centroids.T, axis=1)]
    assert guesses == [req.family for req in test]
