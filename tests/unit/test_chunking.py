"""Chunked prefill: packing prompts into ChunkSize chunks and picking ChunkSize."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.chunking import (
    PROBE_TOKENS,
    Chunk,
    ChunkPiece,
    find_knee,
    pack_chunks,
    probe_sizes,
)

SIZE = 512


def test_prompt_of_exactly_chunk_size_fills_one_chunk_without_padding() -> None:
    chunks = pack_chunks([("a", SIZE)], SIZE)
    assert chunks == [Chunk(SIZE, (ChunkPiece("a", 0, SIZE),))]
    assert chunks[0].used == SIZE
    assert chunks[0].padding == 0


def test_prompt_one_token_over_chunk_size_spans_two_chunks() -> None:
    chunks = pack_chunks([("a", SIZE + 1)], SIZE)
    assert [chunk.pieces for chunk in chunks] == [
        (ChunkPiece("a", 0, SIZE),),
        (ChunkPiece("a", SIZE, 1),),
    ]
    assert [chunk.padding for chunk in chunks] == [0, SIZE - 1]


def test_short_prompts_summing_to_chunk_size_share_one_full_chunk() -> None:
    chunks = pack_chunks([("a", 100), ("b", 300), ("c", 112)], SIZE)
    assert chunks == [
        Chunk(SIZE, (ChunkPiece("a", 0, 100), ChunkPiece("b", 0, 300), ChunkPiece("c", 0, 112)))
    ]
    assert chunks[0].padding == 0


def test_long_prompt_splits_and_next_prompt_fills_the_rest() -> None:
    chunks = pack_chunks([("long", 700), ("short", 400)], SIZE)
    assert [chunk.pieces for chunk in chunks] == [
        (ChunkPiece("long", 0, 512),),
        (ChunkPiece("long", 512, 188), ChunkPiece("short", 0, 324)),
        (ChunkPiece("short", 324, 76),),
    ]
    assert chunks[-1].padding == SIZE - 76


def test_done_offsets_resume_mid_prompt_and_skip_finished_prompts() -> None:
    chunks = pack_chunks([("a", 1000), ("b", 50), ("c", 20)], SIZE, done={"a": 600, "b": 50})
    assert chunks == [Chunk(SIZE, (ChunkPiece("a", 600, 400), ChunkPiece("c", 0, 20)))]
    assert chunks[0].padding == SIZE - 420


def test_done_for_requests_not_in_prompts_is_ignored() -> None:
    assert pack_chunks([("a", 10)], SIZE, done={"gone": 5}) == pack_chunks([("a", 10)], SIZE)


def test_nothing_to_prefill_gives_no_chunk() -> None:
    assert pack_chunks([], SIZE) == []
    assert pack_chunks([("a", 0), ("b", 30)], SIZE, done={"b": 30}) == []


@pytest.mark.parametrize(
    ("prompts", "chunk_size", "done"),
    [
        ([("a", 10)], 0, None),
        ([("a", -1)], SIZE, None),
        ([("a", 10), ("a", 20)], SIZE, None),
        ([("a", 10)], SIZE, {"a": 11}),
        ([("a", 10)], SIZE, {"a": -1}),
    ],
)
def test_invalid_packing_input_is_rejected(
    prompts: list[tuple[str, int]], chunk_size: int, done: dict[str, int] | None
) -> None:
    with pytest.raises(ValueError):
        pack_chunks(prompts, chunk_size, done)


prompt_lists = st.lists(st.integers(min_value=0, max_value=3000), max_size=12)


@given(
    lengths=prompt_lists,
    chunk_size=st.integers(min_value=1, max_value=1024),
    data=st.data(),
)
def test_every_unprefilled_token_appears_exactly_once_in_order(
    lengths: list[int], chunk_size: int, data: st.DataObject
) -> None:
    prompts = [(f"r{index}", length) for index, length in enumerate(lengths)]
    done = {rid: data.draw(st.integers(0, length)) for rid, length in prompts}
    chunks = pack_chunks(prompts, chunk_size, done)

    pieces = [piece for chunk in chunks for piece in chunk.pieces]
    flat = [(piece.request_id, piece.start + i) for piece in pieces for i in range(piece.length)]
    expected = [(rid, token) for rid, length in prompts for token in range(done[rid], length)]
    assert flat == expected
    assert all(piece.length > 0 for piece in pieces)
    assert all(chunk.size == chunk_size and chunk.used <= chunk_size for chunk in chunks)
    assert all(chunk.padding == 0 for chunk in chunks[:-1])
    assert len(chunks) == -(-len(expected) // chunk_size)


def test_knee_is_first_size_within_fraction_of_best_throughput() -> None:
    # Throughput (tokens/s): 1600, 3200, 6000, 9500, 10000, 10100 -> 90% of best is 9090.
    samples = [
        (16, 0.01),
        (32, 0.01),
        (64, 64 / 6000),
        (128, 128 / 9500),
        (256, 256 / 10000),
        (512, 512 / 10100),
    ]
    assert find_knee(samples) == 128
    assert find_knee(samples, fraction=0.99) == 256
    assert find_knee(samples, fraction=1.0) == 512


def test_knee_ignores_sample_order_and_keeps_best_repeat() -> None:
    samples = [(512, 0.05), (64, 0.1), (64, 0.0065), (128, 0.0125)]
    # Best throughput 10240 (512); 64 tokens reach 9846 on their faster repeat.
    assert find_knee(samples) == 64


def test_knee_past_a_throughput_dip_still_picks_the_smallest_qualifying_size() -> None:
    samples = [(16, 0.016), (32, 0.0033), (64, 0.1), (128, 0.128)]
    assert find_knee(samples) == 32


@pytest.mark.parametrize(
    "samples",
    [[], [(0, 1.0)], [(16, 0.0)], [(16, -1.0)], [(-16, 1.0)]],
)
def test_knee_rejects_empty_or_non_positive_samples(samples: list[tuple[int, float]]) -> None:
    with pytest.raises(ValueError):
        find_knee(samples)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_knee_rejects_fractions_outside_unit_interval(fraction: float) -> None:
    with pytest.raises(ValueError):
        find_knee([(16, 1.0)], fraction)


def test_probe_sizes_stop_at_the_engine_budget() -> None:
    assert probe_sizes(100) == [16, 32, 64]
    assert probe_sizes(128) == [16, 32, 64, 128]
    assert probe_sizes(10**6) == list(PROBE_TOKENS)
    assert probe_sizes(8) == [16]
    with pytest.raises(ValueError):
        probe_sizes(0)
