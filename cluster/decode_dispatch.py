"""The decode dispatcher: which decode instance takes a request once its prefill is done.

Runs on each prefill instance over the decode loads the cluster monitor broadcasts. The
power-of-two dispatcher (TetriInfer's) splits decode instances into alpha (enough predicted
free KV for this request: prompt plus predicted decode tokens) and beta (the rest), samples
two from alpha (from beta only when alpha is empty), and takes the one whose heavy:light
decode mix is lowest once this request is counted. Least-work (the default) samples the
same way and takes the one with the fewest predicted decode tokens left, which spreads
decodes over instances of unequal speed. Random and least-loaded are the baselines. All
are `Placement`s, chosen by name with `make_dispatcher`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

from cluster.placement import (
    NO_NEED,
    InstanceLoad,
    LeastLoaded,
    LoadsById,
    Placement,
    RequestNeed,
)


class RandomChoice:
    """Uniform over all decode instances, from a seeded generator."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def choose(self, loads: Mapping[str, InstanceLoad], need: RequestNeed = NO_NEED) -> str | None:
        if not loads:
            return None
        return self._rng.choice(_by_id(loads)).instance_id


class PowerOfTwo:
    """Two random candidates with room for the request; the lower heavy fraction wins."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def choose(self, loads: Mapping[str, InstanceLoad], need: RequestNeed = NO_NEED) -> str | None:
        candidates = self._candidates(loads, need)
        if not candidates:
            return None
        best = min(candidates, key=lambda load: _dispatch_order(load, need))
        return best.instance_id

    def _candidates(
        self, loads: Mapping[str, InstanceLoad], need: RequestNeed
    ) -> list[InstanceLoad]:
        """Two drawn from alpha (the instances whose free KV holds `need.kv_tokens`), or,
        when alpha is empty, from beta (then every instance)."""
        ordered = _by_id(loads)
        kv_tokens = need.kv_tokens
        pool = [load for load in ordered if load.free_kv_tokens >= kv_tokens] or ordered
        if not pool:
            return []
        return self._rng.sample(pool, min(2, len(pool)))


class LeastWork(PowerOfTwo):
    """Power of two over all decode capacity by predicted length: two random candidates
    with room for the request (alpha, as PowerOfTwo), and the one with the fewest predicted
    decode tokens still to make wins. An instance that decodes slower (fewer cores, or a
    borrowed core its prefill partner has taken back) works its tokens down slower and is
    chosen less, so the decode load follows each instance's capacity without measuring it."""

    def choose(self, loads: Mapping[str, InstanceLoad], need: RequestNeed = NO_NEED) -> str | None:
        candidates = self._candidates(loads, need)
        if not candidates:
            return None
        return min(candidates, key=_work_order).instance_id


def _work_order(load: InstanceLoad) -> tuple[int, int, str]:
    return (load.predicted_tokens, load.outstanding, load.instance_id)


def heavy_fraction_after(load: InstanceLoad, need: RequestNeed) -> float:
    """heavy / (heavy + light) on `load` once this request is counted among its decodes."""
    heavy = load.heavy_decodes + int(need.heavy)
    light = load.light_decodes + int(not need.heavy)
    return heavy / (heavy + light)


def _dispatch_order(load: InstanceLoad, need: RequestNeed) -> tuple[float, int, str]:
    return (heavy_fraction_after(load, need), load.outstanding, load.instance_id)


def _by_id(loads: Mapping[str, InstanceLoad]) -> list[InstanceLoad]:
    """The loads in instance-id order, so a seed picks the same way whatever the map order."""
    if isinstance(loads, LoadsById):
        return list(loads.ordered)
    return sorted(loads.values(), key=lambda load: load.instance_id)


def _least_loaded(seed: int = 0) -> Placement:
    return LeastLoaded()


DISPATCHERS: dict[str, Callable[[int], Placement]] = {
    "least_work": LeastWork,
    "power_of_two": PowerOfTwo,
    "random": RandomChoice,
    "least_loaded": _least_loaded,
}


def decode_need(prompt_tokens: int, predicted_tokens: int, heavy_decode_tokens: int) -> RequestNeed:
    """What a request asks of its decode instance: KV for its prompt and its predicted
    decode tokens (the predicted bucket's lower bound), and whether that decode is heavy
    (at least `heavy_decode_tokens`)."""
    return RequestNeed(
        kv_tokens=prompt_tokens + predicted_tokens, heavy=predicted_tokens >= heavy_decode_tokens
    )


def make_dispatcher(name: str, seed: int = 0) -> Placement:
    """The dispatcher called `name`, seeded where it draws at random."""
    try:
        factory = DISPATCHERS[name]
    except KeyError:
        valid = ", ".join(sorted(DISPATCHERS))
        raise ValueError(f"unknown decode dispatcher {name!r}; valid: {valid}") from None
    return factory(seed)
