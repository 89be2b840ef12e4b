"""Which adapter each request of a LoRA benchmark asks for (`tetriserve bench lora`).

Adapter popularity as the Azure Functions trace shows it for functions: a few adapters take
most requests and a long tail is asked for rarely, modelled as Zipf's law, the k-th most
popular adapter asked for in proportion to 1 / k**exponent. Which adapter is the k-th is a
seeded shuffle, so that popularity does not follow the adapters' names or ranks.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

DEFAULT_EXPONENT = 1.0


def zipf_weights(count: int, exponent: float = DEFAULT_EXPONENT) -> list[float]:
    """The request share of the 1st ... `count`-th most popular adapter (they sum to 1)."""
    if count < 1:
        raise ValueError(f"need at least one adapter, got {count}")
    if exponent < 0:
        raise ValueError(f"the exponent must be >= 0, got {exponent}")
    raw = [1.0 / (k**exponent) for k in range(1, count + 1)]
    total = sum(raw)
    return [weight / total for weight in raw]


def adapter_sequence(
    names: Sequence[str], requests: int, exponent: float = DEFAULT_EXPONENT, seed: int = 0
) -> list[str]:
    """The adapter of each of `requests` requests, in order: Zipf-popular over `names`."""
    rng = random.Random(seed)
    by_popularity = list(names)
    rng.shuffle(by_popularity)
    return rng.choices(by_popularity, zipf_weights(len(names), exponent), k=requests)
