"""The five TetriInfer workloads: which kinds of request each holds, and their lengths.

A request is light or heavy in prefill and in decode. Its prefill is heavy when its prompt
does not fit in one ChunkSize (`chunk_tokens`); its decode is heavy when its output exceeds
the heavy-decode threshold, the middle of the gap between the light and the heavy output
ranges. That gives four kinds, LPLD, LPHD, HPLD and HPHD, each a workload of its own; the
fifth workload, Mixed, holds a quarter of each kind in a shuffled order.

Both the live benchmark (`deploy/workloads.py`) and the simulator (`cluster/sim/workload.py`)
draw their requests from these definitions: the workload names, the prompt ranges for a
ChunkSize and model length, the output ranges, and the kind of each request.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

WORKLOADS: tuple[str, ...] = ("LPLD", "LPHD", "HPLD", "HPHD", "Mixed")
KINDS: tuple[str, ...] = WORKLOADS[:4]

# The shortest light prompt, in tokens.
LIGHT_PROMPT_MIN = 16
# How many times a heavy prompt may be as long as ChunkSize.
HEAVY_PROMPT_CHUNKS = 3
# Tokens kept free between the longest prompt plus output and max_model_len.
MODEL_LEN_MARGIN = 8

Range = tuple[int, int]

# Output tokens of light- and heavy-decode requests (inclusive ranges).
LIGHT_DECODE: Range = (8, 32)
HEAVY_DECODE: Range = (96, 192)


def check_output_range(name: str, bounds: Range) -> None:
    """Raises ValueError unless `bounds` is an inclusive range of positive output lengths."""
    low, high = bounds
    if not 1 <= low <= high:
        raise ValueError(f"{name} output range {bounds} must satisfy 1 <= low <= high")


def heavy_decode_threshold(light_decode: Range, heavy_decode: Range) -> int:
    """Outputs above this many tokens are heavy: `(light_high + heavy_low) // 2`.

    Half of Mixed decodes light and half heavy, so every value from the longest light output
    up to just below the shortest heavy one is a median of its outputs; the threshold is the
    middle of that gap. Every light output is then at most the threshold and every heavy
    output above it. Raises ValueError for an empty range or ranges that overlap.
    """
    check_output_range("light decode", light_decode)
    check_output_range("heavy decode", heavy_decode)
    if light_decode[1] >= heavy_decode[0]:
        raise ValueError(
            f"light decode range {light_decode} must end below heavy decode range {heavy_decode}"
        )
    return (light_decode[1] + heavy_decode[0]) // 2


def split(bounds: Range, parts: int) -> list[Range]:
    """`bounds` cut into `parts` contiguous ranges; all of it for each when it is too narrow."""
    low, high = bounds
    if high - low + 1 < parts:
        return [bounds] * parts
    cuts = [low + (high - low + 1) * i // parts for i in range(parts + 1)]
    return [(cuts[i], cuts[i + 1] - 1) for i in range(parts)]


@dataclass(frozen=True, slots=True)
class PromptRanges:
    """Prompt tokens of light- and heavy-prefill requests (inclusive ranges)."""

    light: Range
    heavy: Range


def prompt_ranges(chunk_tokens: int, max_model_len: int, longest_output: int) -> PromptRanges:
    """Light prompts of 16..chunk_tokens tokens; heavy ones from chunk_tokens + 1 up to
    min(3 * chunk_tokens, max_model_len - longest_output) - 8, so any prompt and output fit.

    Raises ValueError when ChunkSize is too small to hold a light range or max_model_len
    leaves no room for a heavy prompt.
    """
    if chunk_tokens < 2 * LIGHT_PROMPT_MIN:
        raise ValueError(f"chunk_tokens {chunk_tokens} is below {2 * LIGHT_PROMPT_MIN}")
    heavy_high = min(HEAVY_PROMPT_CHUNKS * chunk_tokens, max_model_len - longest_output)
    heavy_high -= MODEL_LEN_MARGIN
    if heavy_high <= chunk_tokens:
        raise ValueError(
            f"max_model_len {max_model_len} leaves no room for a heavy prompt: it must exceed "
            f"chunk_tokens + longest output + {MODEL_LEN_MARGIN} = "
            f"{chunk_tokens + longest_output + MODEL_LEN_MARGIN}"
        )
    return PromptRanges(
        light=(LIGHT_PROMPT_MIN, chunk_tokens),
        heavy=(chunk_tokens + 1, heavy_high),
    )


def kinds_for(workload: str, count: int, rng: random.Random) -> list[str]:
    """The kind of each of `count` requests: all `workload`, or for Mixed a quarter of each
    (the first kinds take one more when `count` does not divide by four) shuffled by `rng`."""
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; choose one of {', '.join(WORKLOADS)}")
    if workload != "Mixed":
        return [workload] * count
    kinds = [KINDS[i % len(KINDS)] for i in range(count)]
    rng.shuffle(kinds)
    return kinds
