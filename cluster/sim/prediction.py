"""Predicted decode lengths: what the decode dispatcher and admission plan with.

On the live path a prefill instance asks its `cluster.length_predictor.LengthPredictor`
for a request's output-length bucket once the first token is out, and the decode
dispatcher and decode admission use the bucket's lower bound. The simulator either runs
that very predictor (`LearnedLengths`: trained online on finished requests, over token ids
made from each request's prompt family) or takes the given lengths (`OracleLengths`: the
bucket the true output falls in, as the paper's perfect-prediction runs do).
"""

from __future__ import annotations

from typing import Protocol

from cluster.length_predictor import LengthBuckets, LengthPrediction, LengthPredictor
from cluster.sim.workload import SimRequest


class LengthSource(Protocol):
    def predict(self, request: SimRequest) -> LengthPrediction: ...

    def observe(self, request: SimRequest) -> None:
        """The request finished: its true output length is known."""
        ...


class OracleLengths:
    """The bucket of each request's true output length, clipped to its max_tokens."""

    def __init__(self, buckets: LengthBuckets) -> None:
        self.buckets = buckets

    def predict(self, request: SimRequest) -> LengthPrediction:
        bucket = self.buckets.bucket(request.output_tokens)
        upper = self.buckets.upper(bucket)
        max_tokens = request.output_tokens
        return LengthPrediction(
            bucket=bucket,
            lower_tokens=min(self.buckets.lower(bucket), max_tokens),
            upper_tokens=max_tokens if upper is None else min(upper, max_tokens),
        )

    def observe(self, request: SimRequest) -> None:
        return None


class LearnedLengths:
    """The live system's length predictor, fed the requests' prompt token ids."""

    def __init__(self, predictor: LengthPredictor) -> None:
        self.predictor = predictor

    def predict(self, request: SimRequest) -> LengthPrediction:
        return self.predictor.predict(request.prompt_token_ids(), request.output_tokens)

    def observe(self, request: SimRequest) -> None:
        self.predictor.observe(request.prompt_token_ids(), request.output_tokens)
