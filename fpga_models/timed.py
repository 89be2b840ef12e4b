"""A model's answer paired with the simulated time it took: what every hardware call returns."""

from __future__ import annotations

from typing import Generic, NamedTuple, TypeVar

T = TypeVar("T")


class Timed(NamedTuple, Generic[T]):
    value: T
    latency_ns: float
