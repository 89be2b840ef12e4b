"""Output-length prediction: which length bucket a request's decode will land in.

A predictor runs beside each prefill instance. Before the decode dispatcher chooses a decode
instance for a request, `LengthPredictor.predict` classifies the request's output (decode)
length into buckets of granularity g ([0, g) is class 0, [g, 2g) class 1, ...; the last
bucket is open-ended) from its prompt token ids alone, and the dispatcher plans resources with
the bucket's lower bound. The predictor learns online: completed requests are `observe`d into
a bounded window of recent samples and the classifier is refitted from scratch every
`refit_every` observations, or every eighth of the window's samples once that is more: a
refit costs time in proportion to the window (about 0.2 s for 400 samples, 0.9 s for
1,600), so a full window would otherwise cost a busy prefill instance a second of CPU per
`refit_every` requests. Until the first fit it assumes a request runs to its `max_tokens`.

The classifier is linear over hashed unigrams and bigrams of the prompt's token ids.
`load_sharegpt`, `split_samples` and `majority_accuracy` train and judge it offline.
"""

from __future__ import annotations

import json
import random
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import SGDClassifier

Sample = tuple[Sequence[int], int]
T = TypeVar("T")

N_FEATURES = 2**18
# A full window is refitted at least this many times while it turns over.
REFITS_PER_WINDOW = 8
_HUMAN_ROLES = frozenset({"human", "user"})
_MODEL_ROLES = frozenset({"gpt", "assistant", "chatgpt"})


@dataclass(frozen=True, slots=True)
class LengthBuckets:
    """Output-length classes: bucket b holds [b * granularity, (b + 1) * granularity).

    The last bucket, `count - 1`, is open-ended.
    """

    granularity: int = 32
    count: int = 8

    def __post_init__(self) -> None:
        if self.granularity < 1 or self.count < 1:
            raise ValueError(f"granularity and count must be >= 1, got {self}")

    def bucket(self, tokens: int) -> int:
        if tokens < 0:
            raise ValueError(f"negative token count {tokens}")
        return min(tokens // self.granularity, self.count - 1)

    def lower(self, bucket: int) -> int:
        self._check(bucket)
        return bucket * self.granularity

    def upper(self, bucket: int) -> int | None:
        """The bucket's exclusive upper bound; None for the open last bucket."""
        self._check(bucket)
        return None if bucket == self.count - 1 else (bucket + 1) * self.granularity

    def _check(self, bucket: int) -> None:
        if not 0 <= bucket < self.count:
            raise ValueError(f"bucket {bucket} outside [0, {self.count})")


@dataclass(frozen=True, slots=True)
class LengthPrediction:
    """A predicted bucket and its token bounds, both clipped to the request's max_tokens."""

    bucket: int
    lower_tokens: int
    upper_tokens: int


@dataclass(frozen=True, slots=True, eq=False)
class _LinearScorer:
    """A fitted linear classifier's weights, laid out for fast one-prompt scoring."""

    weights: np.ndarray  # (features, classes) C-contiguous, or (features, 1) for two classes
    intercept: np.ndarray
    classes: np.ndarray

    @classmethod
    def of(cls, model: SGDClassifier) -> _LinearScorer:
        weights = np.ascontiguousarray(model.coef_.T)
        return cls(weights, model.intercept_.copy(), model.classes_.copy())

    def classify(self, features: sparse.csr_matrix) -> list[int]:
        scores = features @ self.weights + self.intercept
        # Two classes give one score column: positive means the second class.
        binary = scores.shape[1] == 1
        chosen = (scores[:, 0] > 0).astype(int) if binary else scores.argmax(axis=1)
        return [int(self.classes[index]) for index in chosen]


def _document(prompt_token_ids: Sequence[int]) -> str:
    return " ".join(map(str, prompt_token_ids))


def _vectorizer() -> HashingVectorizer:
    return HashingVectorizer(
        analyzer="word",
        token_pattern=r"\S+",
        lowercase=False,
        n_features=N_FEATURES,
        alternate_sign=False,
        ngram_range=(1, 2),
    )


class LengthPredictor:
    """Predicts output-length buckets from prompt token ids; learns from completed requests."""

    def __init__(
        self,
        buckets: LengthBuckets = LengthBuckets(),
        window: int = 4096,
        refit_every: int = 16,
        seed: int = 0,
    ) -> None:
        if window < 1 or refit_every < 1:
            raise ValueError("window and refit_every must be >= 1")
        self.buckets = buckets
        self.window = window
        self.refit_every = refit_every
        self.seed = seed
        # Each sample is kept as its feature row and bucket, so a refit only stacks rows.
        self._window: deque[tuple[sparse.csr_matrix, int]] = deque(maxlen=window)
        self._vectorizer = _vectorizer()
        self._model: _LinearScorer | None = None
        self._constant: int | None = None
        self._observations = 0
        self._pending = 0

    @property
    def trained(self) -> bool:
        return self._model is not None or self._constant is not None

    @property
    def observations(self) -> int:
        """Samples learnt from so far, through `observe` and `fit`."""
        return self._observations

    def predict(self, prompt_token_ids: Sequence[int], max_tokens: int) -> LengthPrediction:
        """The request's bucket, never beyond the bucket holding `max_tokens`."""
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        ceiling = self.buckets.bucket(max_tokens)
        bucket = min(self._classify([prompt_token_ids])[0], ceiling)
        upper = self.buckets.upper(bucket)
        return LengthPrediction(
            bucket=bucket,
            lower_tokens=min(self.buckets.lower(bucket), max_tokens),
            upper_tokens=max_tokens if upper is None else min(upper, max_tokens),
        )

    def observe(self, prompt_token_ids: Sequence[int], output_tokens: int) -> None:
        """Record a completed request; refit (synchronously) every `refit_every` of them, or
        every `1 / REFITS_PER_WINDOW` of the window, whichever is more."""
        self._window.extend(self._rows([(prompt_token_ids, output_tokens)]))
        self._observations += 1
        self._pending += 1
        if self._pending >= max(self.refit_every, len(self._window) // REFITS_PER_WINDOW):
            self._refit()

    def fit(self, samples: Sequence[Sample]) -> None:
        """Replace the window with (the most recent of) `samples` and refit now."""
        rows = self._rows(list(samples)[-self.window :])
        self._window.clear()
        self._window.extend(rows)
        self._observations += len(samples)
        self._refit()

    def accuracy(self, samples: Sequence[Sample]) -> float:
        """The fraction of `samples` whose bucket is predicted exactly (no max_tokens cap)."""
        if not samples:
            raise ValueError("accuracy needs at least one sample")
        predicted = self._classify([ids for ids, _ in samples])
        hits = sum(
            guess == self.buckets.bucket(output)
            for guess, (_, output) in zip(predicted, samples, strict=True)
        )
        return hits / len(samples)

    def _classify(self, prompts: Sequence[Sequence[int]]) -> list[int]:
        if self._constant is not None:
            return [self._constant] * len(prompts)
        if self._model is None:
            return [self.buckets.count - 1] * len(prompts)
        return self._model.classify(self._features(prompts))

    def _features(self, prompts: Sequence[Sequence[int]]) -> sparse.csr_matrix:
        return self._vectorizer.transform([_document(ids) for ids in prompts])

    def _rows(self, samples: Sequence[Sample]) -> list[tuple[sparse.csr_matrix, int]]:
        """Each sample as (its feature row, its bucket)."""
        if any(output < 0 for _, output in samples):
            raise ValueError("negative output length")
        if not samples:
            return []
        features = self._features([ids for ids, _ in samples])
        return [
            (features[index], self.buckets.bucket(out)) for index, (_, out) in enumerate(samples)
        ]

    def _refit(self) -> None:
        """Fits a new model on the window; predictions switch to it in one assignment."""
        self._pending = 0
        if not self._window:
            self._model, self._constant = None, None
            return
        labels = np.array([label for _, label in self._window])
        if len(np.unique(labels)) == 1:
            self._model, self._constant = None, int(labels[0])
            return
        features = sparse.vstack([row for row, _ in self._window], format="csr")
        model = SGDClassifier(loss="log_loss", random_state=self.seed)
        self._model, self._constant = _LinearScorer.of(model.fit(features, labels)), None


def majority_accuracy(
    train: Sequence[Sample], test: Sequence[Sample], buckets: LengthBuckets
) -> float:
    """Accuracy on `test` of always predicting the most common bucket of `train`."""
    if not train or not test:
        raise ValueError("majority_accuracy needs train and test samples")
    counts = Counter(buckets.bucket(output) for _, output in train)
    majority = min(counts, key=lambda bucket: (-counts[bucket], bucket))
    return sum(buckets.bucket(output) == majority for _, output in test) / len(test)


def held_out_accuracy(
    predictor: LengthPredictor, samples: Sequence[Sample], seed: int = 0
) -> dict[str, float]:
    """Fits `predictor` on a seeded 75% of `samples` and judges it on the rest, beside the
    majority-class baseline: {"samples", "accuracy", "majority_accuracy"}."""
    train, test = split_samples(samples, seed=seed)
    predictor.fit(train)
    return {
        "samples": len(samples),
        "accuracy": predictor.accuracy(test),
        "majority_accuracy": majority_accuracy(train, test, predictor.buckets),
    }


def split_samples(
    samples: Sequence[T], test_fraction: float = 0.25, seed: int = 0
) -> tuple[list[T], list[T]]:
    """A seeded shuffle of `samples` cut into (train, test)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    shuffled = list(samples)
    random.Random(seed).shuffle(shuffled)
    cut = len(shuffled) - round(len(shuffled) * test_fraction)
    return shuffled[:cut], shuffled[cut:]


def _turn(turn: Any) -> tuple[str, str] | None:
    """(role, text) of one conversation turn, or None when malformed."""
    if not isinstance(turn, dict):
        return None
    role = turn.get("from", turn.get("role"))
    text = turn.get("value", turn.get("content"))
    if not isinstance(role, str) or not isinstance(text, str):
        return None
    return role.lower(), text


def _exchanges(entry: Any) -> Iterator[tuple[str, str]]:
    """(human text, model reply) for each human turn directly followed by a model turn."""
    turns = entry.get("conversations") if isinstance(entry, dict) else None
    if not isinstance(turns, list):
        return
    parsed = [_turn(turn) for turn in turns]
    for first, second in pairwise(parsed):
        if first and second and first[0] in _HUMAN_ROLES and second[0] in _MODEL_ROLES:
            yield first[1], second[1]


def load_sharegpt(
    path: Path, encode: Callable[[str], list[int]], limit: int | None = None
) -> list[tuple[list[int], int]]:
    """(prompt token ids, output tokens) samples from a ShareGPT JSON file.

    Malformed entries and turns, and prompts that encode to no token, are skipped.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    data = json.loads(Path(path).read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of conversations")
    samples: list[tuple[list[int], int]] = []
    for entry in data:
        for prompt, reply in _exchanges(entry):
            ids = encode(prompt)
            if ids:
                samples.append((ids, len(encode(reply))))
            if limit is not None and len(samples) >= limit:
                return samples
    if not samples:
        raise ValueError(f"{path}: no (human, gpt) exchange found")
    return samples
