"""Chunked prefill: how a prefill instance cuts the prompts it releases into ChunkSize chunks.

The prefill instance takes prompts off its queue in policy order and packs them into
fixed-size chunks of `ChunkSize` tokens, so that every prefill forward pass runs at the
accelerator's saturation point. A long prompt spans several chunks, short prompts share one,
and only the last chunk may be partly empty (padded). A request remembers its last prefilled
position, so packing resumes mid-prompt. Chunks hold prefill tokens only.

`ChunkSize` is chosen at start-up: the instance times forward passes of `probe_sizes(...)`
tokens and `find_knee` picks the smallest size whose throughput is near the best seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PROBE_TOKENS: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True, slots=True)
class ChunkPiece:
    """The prompt tokens [start, start + length) of one request, inside one chunk."""

    request_id: str
    start: int
    length: int

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass(frozen=True, slots=True)
class Chunk:
    """One prefill forward pass: `size` token slots, filled by `pieces` then padding."""

    size: int
    pieces: tuple[ChunkPiece, ...]

    @property
    def used(self) -> int:
        return sum(piece.length for piece in self.pieces)

    @property
    def padding(self) -> int:
        return self.size - self.used


def _remaining(
    prompts: Sequence[tuple[str, int]], done: Mapping[str, int]
) -> list[tuple[str, int, int]]:
    """(request_id, first unprefilled token, prompt length) per prompt, validated."""
    seen: set[str] = set()
    work: list[tuple[str, int, int]] = []
    for request_id, tokens in prompts:
        if request_id in seen:
            raise ValueError(f"request {request_id!r} appears twice")
        seen.add(request_id)
        start = done.get(request_id, 0)
        if tokens < 0 or start < 0:
            raise ValueError(f"request {request_id!r}: negative token count")
        if start > tokens:
            raise ValueError(f"request {request_id!r}: done {start} > prompt length {tokens}")
        work.append((request_id, start, tokens))
    return work


def pack_chunks(
    prompts: Sequence[tuple[str, int]],
    chunk_size: int,
    done: Mapping[str, int] | None = None,
) -> list[Chunk]:
    """Pack the unprefilled tokens of `prompts` (in policy order) into `chunk_size` chunks.

    `prompts` holds (request_id, prompt_tokens); `done` the tokens already prefilled per
    request (its last prefilled position; default 0; requests not in `prompts` are ignored).
    Long prompts are split across chunks, short ones share a chunk; every chunk but possibly
    the last is full.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    chunks: list[Chunk] = []
    pieces: list[ChunkPiece] = []
    free = chunk_size
    for request_id, start, end in _remaining(prompts, done or {}):
        while start < end:
            length = min(free, end - start)
            pieces.append(ChunkPiece(request_id, start, length))
            start += length
            free -= length
            if free == 0:
                chunks.append(Chunk(chunk_size, tuple(pieces)))
                pieces, free = [], chunk_size
    if pieces:
        chunks.append(Chunk(chunk_size, tuple(pieces)))
    return chunks


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
