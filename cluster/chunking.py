"""ChunkSize: how many prompt tokens a prefill forward pass computes, and how it is chosen.

A prefill instance's engine runs vLLM's own chunked prefill with a token budget of ChunkSize
per forward pass (`max_num_batched_tokens`): the prompts the instance releases to it, in its
queue's policy order, are cut and packed into passes of at most ChunkSize tokens (a long
prompt spans several, short ones share one), so every pass runs near the accelerator's
saturation point. ChunkSize is chosen at start-up: the instance times forward passes of
`probe_sizes(...)` tokens and `find_knee` picks the smallest size whose throughput is near
the best seen.
"""

from __future__ import annotations

from collections.abc import Sequence

PROBE_TOKENS: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024)


def probe_sizes(max_tokens: int) -> list[int]:
    """The PROBE_TOKENS not above `max_tokens`; at least the smallest one."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    sizes = [tokens for tokens in PROBE_TOKENS if tokens <= max_tokens]
    return sizes or [PROBE_TOKENS[0]]


def find_knee(samples: Sequence[tuple[int, float]], fraction: float = 0.9) -> int:
    """The smallest tokens-per-pass whose throughput reaches `fraction` of the best seen.

    `samples` holds (tokens per forward pass, seconds per pass); throughput is their ratio.
    Repeated measurements of one token count count by their best throughput.
    """
    if not samples:
        raise ValueError("find_knee needs at least one sample")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if any(tokens <= 0 or seconds <= 0 for tokens, seconds in samples):
        raise ValueError("token counts and seconds must be positive")
    throughput = {tokens: 0.0 for tokens, _ in samples}
    for tokens, seconds in samples:
        throughput[tokens] = max(throughput[tokens], tokens / seconds)
    best = max(throughput.values())
    return min(tokens for tokens, rate in throughput.items() if rate >= fraction * best)
