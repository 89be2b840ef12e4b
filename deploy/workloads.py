"""The five request mixes of `tetriserve bench workloads`, as in TetriInfer.

A request is light or heavy in prefill (its prompt fits in one ChunkSize or not) and in
decode (its output is at most the median output length or longer), which gives four kinds:
LPLD, LPHD, HPLD and HPHD; the fifth workload, Mixed, takes a quarter of each. The kinds,
the prompt ranges and the heavy-decode threshold are those of `cluster/workload_mix.py`.

Prompts come from families. Each family has its own topic words, its own opening phrase
and its own output-length range, so a length predictor can learn the output length from
the prompt: the light-decode families ("ask", "define") are worded as short questions, the
heavy-decode families ("story", "essay") as requests for long texts, and the family's words
make up all of a prompt but its opening. Everything is deterministic for a given seed.

`make_workload` builds the requests, `write_dataset` writes them as the JSONL dataset of
vLLM's benchmark client (`{"prompt": str, "output_tokens": int}` per line) and
`family_samples` gives (prompt ids, output tokens) pairs to train a length predictor on.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cluster.workload_mix import (
    HEAVY_DECODE,
    LIGHT_DECODE,
    Range,
    heavy_decode_threshold,
    kinds_for,
    prompt_ranges,
    split,
)

# Draws in a row that may overshoot a prompt's class before building it gives up.
MAX_REJECTED_DRAWS = 200

CountTokens = Callable[[str], int]


@dataclass(frozen=True, slots=True)
class Family:
    """A kind of prompt: an opening phrase, topic words, and heavy or light decode."""

    name: str
    heavy_decode: bool
    opening: str
    words: tuple[str, ...]


def _family(name: str, heavy_decode: bool, opening: str, words: str) -> Family:
    return Family(name, heavy_decode, opening, tuple(words.split()))


FAMILIES: tuple[Family, ...] = (
    _family(
        "ask",
        False,
        "Answer in one short line:",
        (
            "weather train ticket price coffee lunch meeting office phone email bus station "
            "hour open shop bank card door key room floor street map road car park lamp desk "
            "chair window"
        ),
    ),
    _family(
        "define",
        False,
        "Define in a few words:",
        (
            "atom cell gene force mass energy wave field charge orbit acid salt metal crystal "
            "protein enzyme virus fossil magnet prism lens vapor plasma photon neuron tissue "
            "mineral glacier volcano nucleus"
        ),
    ),
    _family(
        "story",
        True,
        "Write a long and detailed story about",
        (
            "dragon castle forest knight princess wizard river mountain village sword shadow "
            "journey treasure witch king queen cave storm ship sea island wolf moon star giant "
            "tower quest spell battle legend"
        ),
    ),
    _family(
        "essay",
        True,
        "Write a thorough essay of many paragraphs on",
        (
            "economy history policy society culture democracy freedom justice education "
            "industry trade labor market government science ethics philosophy religion "
            "language literature climate health technology poverty wealth law rights nation "
            "empire revolution"
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where light ends: heavy prefill above `chunk_tokens`, heavy decode above the other."""

    chunk_tokens: int
    heavy_decode_tokens: int

    def describe(self) -> str:
        return (
            f"heavy prefill: prompt > {self.chunk_tokens} tokens (ChunkSize); "
            f"heavy decode: output > {self.heavy_decode_tokens} tokens (median output)"
        )


@dataclass(frozen=True, slots=True)
class WorkloadRequest:
    """One request of a workload; `prompt_tokens` counts the prompt as the server will."""

    prompt: str
    family: str
    prompt_tokens: int
    output_tokens: int


def is_heavy_prefill(req: WorkloadRequest, th: Thresholds) -> bool:
    return req.prompt_tokens > th.chunk_tokens


def is_heavy_decode(req: WorkloadRequest, th: Thresholds) -> bool:
    return req.output_tokens > th.heavy_decode_tokens


def kind_of(req: WorkloadRequest, th: Thresholds) -> str:
    """The request's kind among `cluster.workload_mix.KINDS`, e.g. `LPHD`."""
    prefill = "HP" if is_heavy_prefill(req, th) else "LP"
    return prefill + ("HD" if is_heavy_decode(req, th) else "LD")


def thresholds_for(chunk_tokens: int, light_decode: Range, heavy_decode: Range) -> Thresholds:
    """The thresholds of workloads drawn from these output ranges (`heavy_decode_threshold`)."""
    return Thresholds(chunk_tokens, heavy_decode_threshold(light_decode, heavy_decode))


def family_ranges(light_decode: Range, heavy_decode: Range) -> dict[str, Range]:
    """Each family's output range: its class's range cut into one contiguous part per family."""
    ranges: dict[str, Range] = {}
    for heavy, bounds in ((False, light_decode), (True, heavy_decode)):
        names = [family.name for family in FAMILIES if family.heavy_decode == heavy]
        ranges.update(zip(names, split(bounds, len(names)), strict=True))
    return ranges


@dataclass(frozen=True, slots=True)
class _Plan:
    """What `make_workload` draws from: prompt token ranges and family output ranges."""

    light_prompt: Range
    heavy_prompt: Range
    outputs: dict[str, Range]


def _plan(chunk_tokens: int, max_model_len: int, light_decode: Range, heavy_decode: Range) -> _Plan:
    longest_output = max(light_decode[1], heavy_decode[1])
    prompts = prompt_ranges(chunk_tokens, max_model_len, longest_output)
    return _Plan(prompts.light, prompts.heavy, family_ranges(light_decode, heavy_decode))


def _prompt_text(opening: str, words: Sequence[str]) -> str:
    return " ".join([opening, *words])


def _widest(family: Family, count_tokens: CountTokens) -> int:
    """An upper bound on the tokens one of the family's words adds to a prompt."""
    return max(count_tokens(" " + word) for word in family.words)


def _fill(
    family: Family, bounds: Range, widest: int, count_tokens: CountTokens, rng: random.Random
) -> tuple[str, int]:
    """A prompt of the family with `bounds[0]` to `bounds[1]` tokens.

    Adds random family words, as many at a time as cannot pass the low bound given that no
    word adds more than `widest` tokens, then checks the count; a draw that would pass the
    high bound is dropped and drawn again.
    """
    target, high = bounds
    words: list[str] = []
    count, rejected = count_tokens(family.opening), 0
    while count < target:
        batch = max(1, (target - count) // widest)
        trial = words + [rng.choice(family.words) for _ in range(batch)]
        trial_count = count_tokens(_prompt_text(family.opening, trial))
        if trial_count > high:
            rejected += 1
            if rejected > MAX_REJECTED_DRAWS:
                raise RuntimeError(f"no {family.name} prompt fits in {target}..{high} tokens")
            continue
        words, count, rejected = trial, trial_count, 0
    return _prompt_text(family.opening, words), count


def _request(
    kind: str, index: int, plan: _Plan, count_tokens: CountTokens, rng: random.Random
) -> WorkloadRequest:
    """Request `index` of its kind: families of the kind's decode class take turns."""
    families = [family for family in FAMILIES if family.heavy_decode == kind.endswith("HD")]
    family = families[index % len(families)]
    low, high = plan.heavy_prompt if kind.startswith("HP") else plan.light_prompt
    widest = _widest(family, count_tokens)
    target = rng.randint(low, max(low, high - widest + 1))
    prompt, prompt_tokens = _fill(family, (target, high), widest, count_tokens, rng)
    output_tokens = rng.randint(*plan.outputs[family.name])
    return WorkloadRequest(prompt, family.name, prompt_tokens, output_tokens)


def make_workload(
    name: str,
    num_requests: int,
    count_tokens: CountTokens,
    chunk_tokens: int,
    max_model_len: int,
    seed: int = 0,
    light_decode: Range = LIGHT_DECODE,
    heavy_decode: Range = HEAVY_DECODE,
) -> list[WorkloadRequest]:
    """`num_requests` requests of workload `name`, the same for the same arguments.

    Light prompts have 16..chunk_tokens tokens, heavy ones chunk_tokens + 1 up to
    min(3 * chunk_tokens, max_model_len - longest output - 8), both as `count_tokens` counts
    them; output lengths are uniform in the family's range (`family_ranges`). Mixed holds
    each kind a quarter of the time (the first kinds take one more when the count does not
    divide by four), in an order shuffled with the seed.
    """
    thresholds_for(chunk_tokens, light_decode, heavy_decode)  # checks the ranges
    if num_requests < 1:
        raise ValueError(f"num_requests must be at least 1, not {num_requests}")
    plan = _plan(chunk_tokens, max_model_len, light_decode, heavy_decode)
    rng = random.Random(seed)
    kinds = kinds_for(name, num_requests, rng)
    seen: dict[str, int] = {}
    requests = []
    for kind in kinds:
        index = seen[kind] = seen.get(kind, -1) + 1
        requests.append(_request(kind, index, plan, count_tokens, rng))
    return requests


def write_dataset(requests: Sequence[WorkloadRequest], path: Path) -> Path:
    """Writes the requests as the client's custom dataset; the client wants a `.jsonl` name."""
    path = Path(path)
    if path.suffix != ".jsonl":
        raise ValueError(f"the dataset path must end in .jsonl, not {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (
        json.dumps({"prompt": req.prompt, "output_tokens": req.output_tokens}) + "\n"
        for req in requests
    )
    path.write_text("".join(lines), encoding="utf-8")
    return path


def family_samples(
    requests: Sequence[WorkloadRequest], encode: Callable[[str], list[int]]
) -> list[tuple[list[int], int]]:
    """(prompt token ids, output tokens) per request, to train a length predictor on."""
    return [(encode(req.prompt), req.output_tokens) for req in requests]
