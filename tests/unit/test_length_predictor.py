"""The output-length predictor: buckets, online learning, and accuracy on a synthetic workload."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from cluster.length_predictor import (
    LengthBuckets,
    LengthPrediction,
    LengthPredictor,
    load_sharegpt,
    majority_accuracy,
    split_samples,
)

BUCKETS = LengthBuckets(granularity=32, count=8)
SHARED_VOCAB = range(200)
FAMILY_WEIGHTS = (0.4, 0.3, 0.2, 0.1)

Sample = tuple[list[int], int]


def family_prompt(rng: random.Random, family: int, intent: int) -> list[int]:
    """Prompt ids: shared words, the family's vocabulary, and a few intent words."""
    vocabulary = [1000 * (family + 1) + word for word in range(40)]
    markers = [1000 * (family + 1) + 500 + 10 * intent + word for word in range(5)]
    ids = []
    for _ in range(rng.randint(16, 128)):
        draw = rng.random()
        pool = SHARED_VOCAB if draw < 0.45 else vocabulary if draw < 0.95 else markers
        ids.append(rng.choice(pool))
    ids[rng.randrange(len(ids))] = rng.choice(markers)
    return ids


def family_output(rng: random.Random, family: int, intent: int) -> int:
    """Each (family, intent) has its own bucket; 15% of outputs are uniform noise."""
    if rng.random() < 0.15:
        return rng.randint(0, BUCKETS.granularity * (BUCKETS.count + 2))
    bucket = 2 * family + intent
    return bucket * BUCKETS.granularity + rng.randrange(BUCKETS.granularity)


def workload(count: int, seed: int) -> list[Sample]:
    """Four prompt families, each with its own vocabulary and output lengths, plus noise."""
    rng = random.Random(seed)
    samples = []
    for _ in range(count):
        family = rng.choices(range(len(FAMILY_WEIGHTS)), FAMILY_WEIGHTS)[0]
        intent = rng.randrange(2)
        samples.append((family_prompt(rng, family, intent), family_output(rng, family, intent)))
    return samples


@pytest.fixture(scope="module")
def split() -> tuple[list[Sample], list[Sample]]:
    return split_samples(workload(1600, seed=7), test_fraction=0.25, seed=0)


@pytest.fixture(scope="module")
def trained(split: tuple[list[Sample], list[Sample]]) -> LengthPredictor:
    predictor = LengthPredictor(BUCKETS)
    predictor.fit(split[0])
    return predictor


@pytest.mark.parametrize(
    ("tokens", "bucket"),
    [(0, 0), (31, 0), (32, 1), (63, 1), (64, 2), (223, 6), (224, 7), (10**6, 7)],
)
def test_bucket_of_a_length(tokens: int, bucket: int) -> None:
    assert BUCKETS.bucket(tokens) == bucket


def test_buckets_have_granularity_wide_classes_and_an_open_last_one() -> None:
    assert (BUCKETS.lower(0), BUCKETS.upper(0)) == (0, 32)
    assert (BUCKETS.lower(6), BUCKETS.upper(6)) == (192, 224)
    assert (BUCKETS.lower(7), BUCKETS.upper(7)) == (224, None)


@pytest.mark.parametrize("call", [lambda: BUCKETS.bucket(-1), lambda: BUCKETS.lower(8)])
def test_buckets_reject_negative_lengths_and_unknown_buckets(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        call()


def test_predictor_beats_the_majority_class_on_held_out_prompts(
    split: tuple[list[Sample], list[Sample]], trained: LengthPredictor
) -> None:
    train, test = split
    accuracy = trained.accuracy(test)
    majority = majority_accuracy(train, test, BUCKETS)
    print(f"length predictor accuracy {accuracy:.3f} vs majority-class {majority:.3f}")
    assert accuracy > majority + 0.3


def test_online_observation_learns_the_workload(
    split: tuple[list[Sample], list[Sample]],
) -> None:
    train, test = split
    predictor = LengthPredictor(BUCKETS, refit_every=200)
    for prompt, output in train:
        predictor.observe(prompt, output)
    assert predictor.observations == len(train)
    accuracy = predictor.accuracy(test)
    print(f"length predictor accuracy (online) {accuracy:.3f}")
    assert accuracy > majority_accuracy(train, test, BUCKETS) + 0.3


def test_untrained_predictor_assumes_the_request_runs_to_max_tokens() -> None:
    predictor = LengthPredictor(BUCKETS)
    assert not predictor.trained
    assert predictor.predict([1, 2, 3], max_tokens=100) == LengthPrediction(3, 96, 100)
    assert predictor.predict([1, 2, 3], max_tokens=5000) == LengthPrediction(7, 224, 5000)
    assert predictor.predict([1, 2, 3], max_tokens=32) == LengthPrediction(1, 32, 32)


def test_prediction_never_goes_beyond_max_tokens(
    split: tuple[list[Sample], list[Sample]], trained: LengthPredictor
) -> None:
    prompts = [prompt for prompt, _ in split[1]]
    longest = [prompt for prompt in prompts if trained.predict(prompt, 10**6).bucket == 7]
    assert len(longest) >= 5
    for max_tokens in (1, 20, 32, 50, 100, 230):
        assert {trained.predict(prompt, max_tokens).bucket for prompt in longest} == {
            BUCKETS.bucket(max_tokens)
        }
        for prompt in prompts[:50]:
            prediction = trained.predict(prompt, max_tokens)
            assert prediction.bucket <= BUCKETS.bucket(max_tokens)
            assert prediction.lower_tokens <= prediction.upper_tokens <= max_tokens


def test_trained_prediction_uses_the_bucket_bounds(
    split: tuple[list[Sample], list[Sample]], trained: LengthPredictor
) -> None:
    short_family = [prompt for prompt, output in split[1] if BUCKETS.bucket(output) == 0]
    predictions = [trained.predict(prompt, max_tokens=1000) for prompt in short_family]
    assert predictions.count(LengthPrediction(0, 0, 32)) > len(predictions) // 2


def test_observe_trains_after_refit_every_samples() -> None:
    predictor = LengthPredictor(BUCKETS, refit_every=16)
    samples = workload(16, seed=3)
    for prompt, output in samples[:15]:
        predictor.observe(prompt, output)
    assert not predictor.trained
    assert predictor.observations == 15
    predictor.observe(*samples[15])
    assert predictor.trained
    assert predictor.observations == 16


def test_a_large_window_is_refitted_after_an_eighth_of_it_is_new(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    predictor = LengthPredictor(BUCKETS, refit_every=16)
    predictor.fit(drifting({0: 10, 1: 100}, 256, seed=1))
    refits: list[int] = []
    refit = predictor._refit

    def counted_refit() -> None:
        refits.append(predictor.observations)
        refit()

    monkeypatch.setattr(predictor, "_refit", counted_refit)
    for sample in drifting({0: 170, 1: 70}, 80, seed=3):
        predictor.observe(*sample)
    # an eighth of the window (292 // 8, then 333 // 8) is more than refit_every
    assert refits == [256 + 36, 256 + 36 + 41]


def test_a_single_observed_class_is_predicted_for_every_prompt() -> None:
    predictor = LengthPredictor(BUCKETS, refit_every=2)
    predictor.observe([1, 2], 40)
    predictor.observe([3, 4], 50)
    assert predictor.trained
    assert predictor.predict([9, 9, 9], max_tokens=1000) == LengthPrediction(1, 32, 64)


def drifting(family_outputs: dict[int, int], count: int, seed: int) -> list[Sample]:
    rng = random.Random(seed)
    samples = []
    for index in range(count):
        family = index % 2
        samples.append((family_prompt(rng, family, 0), family_outputs[family]))
    return samples


def test_bounded_window_forgets_old_behaviour() -> None:
    predictor = LengthPredictor(BUCKETS, window=64, refit_every=16)
    for sample in drifting({0: 10, 1: 100}, 64, seed=1):
        predictor.observe(*sample)
    probe = drifting({0: 0, 1: 0}, 2, seed=2)
    assert [predictor.predict(p, 1000).bucket for p, _ in probe] == [0, 3]
    for sample in drifting({0: 170, 1: 70}, 64, seed=3):
        predictor.observe(*sample)
    assert [predictor.predict(p, 1000).bucket for p, _ in probe] == [5, 2]


def test_fit_replaces_the_window_with_the_most_recent_samples() -> None:
    predictor = LengthPredictor(BUCKETS, window=40)
    predictor.fit(drifting({0: 10, 1: 100}, 40, seed=1))
    predictor.fit(drifting({0: 10, 1: 100}, 40, seed=2) + drifting({0: 170, 1: 70}, 40, seed=3))
    probe = drifting({0: 0, 1: 0}, 2, seed=4)
    assert [predictor.predict(p, 1000).bucket for p, _ in probe] == [5, 2]
    assert predictor.observations == 120


def test_fit_on_nothing_leaves_the_predictor_untrained() -> None:
    predictor = LengthPredictor(BUCKETS)
    predictor.fit(drifting({0: 10, 1: 100}, 8, seed=1))
    predictor.fit([])
    assert not predictor.trained
    assert predictor.predict([1], max_tokens=64) == LengthPrediction(2, 64, 64)


@pytest.mark.parametrize("max_tokens", [0, -5])
def test_predict_rejects_non_positive_max_tokens(max_tokens: int) -> None:
    with pytest.raises(ValueError):
        LengthPredictor(BUCKETS).predict([1], max_tokens)


def test_observe_rejects_negative_output_lengths() -> None:
    with pytest.raises(ValueError):
        LengthPredictor(BUCKETS).observe([1], -1)


def test_majority_accuracy_counts_hits_of_the_most_common_train_bucket() -> None:
    train = [([1], 5), ([2], 10), ([3], 40)]
    test = [([4], 0), ([5], 33), ([6], 31), ([7], 64)]
    assert majority_accuracy(train, test, BUCKETS) == 0.5


def test_split_samples_is_a_seeded_partition() -> None:
    samples = list(range(100))
    train, test = split_samples(samples, test_fraction=0.2, seed=5)
    assert (len(train), len(test)) == (80, 20)
    assert sorted(train + test) == samples
    assert split_samples(samples, 0.2, seed=5) == (train, test)
    assert split_samples(samples, 0.2, seed=6) != (train, test)
    with pytest.raises(ValueError):
        split_samples(samples, test_fraction=1.0)


def encode(text: str) -> list[int]:
    return [len(word) for word in text.split()]


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_load_sharegpt_pairs_human_turns_with_the_reply_that_follows(tmp_path: Path) -> None:
    data = [
        {
            "conversations": [
                {"from": "system", "value": "be brief"},
                {"from": "human", "value": "hello there"},
                {"from": "gpt", "value": "hi how are you"},
                {"from": "human", "value": "fine"},
                {"from": "human", "value": "really fine"},
                {"from": "gpt", "value": "good"},
            ]
        },
        {
            "conversations": [
                {"role": "user", "content": "abc"},
                {"role": "assistant", "content": "x y z"},
            ]
        },
        "not an entry",
        {"id": "no conversations"},
        {"conversations": "not a list"},
        {"conversations": [{"from": "human"}, {"from": "gpt", "value": "lost"}]},
        {"conversations": [{"from": "human", "value": 7}, {"from": "gpt", "value": "lost"}]},
        {"conversations": [{"from": "human", "value": "  "}, {"from": "gpt", "value": "empty"}]},
        {"conversations": [{"from": "gpt", "value": "reply first"}]},
    ]
    path = write_json(tmp_path / "sharegpt.json", data)
    assert load_sharegpt(path, encode) == [([5, 5], 4), ([6, 4], 1), ([3], 3)]
    assert load_sharegpt(path, encode, limit=2) == [([5, 5], 4), ([6, 4], 1)]


def test_load_sharegpt_rejects_files_without_samples(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_sharegpt(write_json(tmp_path / "empty.json", [{"conversations": []}]), encode)
    with pytest.raises(ValueError):
        load_sharegpt(write_json(tmp_path / "dict.json", {"conversations": []}), encode)
