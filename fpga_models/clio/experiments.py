"""Clio's calibration experiments: real requests driven through a default `ClioBoard`.

Each experiment allocates, writes and reads through the board's page table, TLB and memory,
and summarises the latencies the board reported. The 1,000-process run maps one range per
process and reads them round-robin, so every read misses the 64-entry TLB.
"""

from __future__ import annotations

import statistics

from fpga_models.clio.board import ClioBoard
from fpga_models.clio.params import GIB, KIB, MIB, ClioParams
from fpga_models.figure import Figure
from fpga_models.net import percentile

READ_SIZES_PAPER_US = {4: 2.50, 16: 2.54, 64: 2.64, 256: 3.00, 1 * KIB: 4.35, 4 * KIB: 7.13}


def _board(seed: int, params: ClioParams | None = None) -> ClioBoard:
    return ClioBoard(params or ClioParams(), seed=seed)


def read_latencies_ns(nbytes: int, reads: int, seed: int = 0) -> list[float]:
    """One process reading `nbytes` from a written page, TLB warm after the first read."""
    board = _board(seed)
    va, _ = board.ralloc(1, 4 * MIB)
    board.rwrite(1, va, bytes(range(256)) * (nbytes // 256 + 1))
    board.rread(1, va, nbytes)
    return [board.rread(1, va, nbytes).latency_ns for _ in range(reads)]


def multi_process_latencies_ns(processes: int, rounds: int, seed: int = 0) -> list[float]:
    """`processes` processes, one 4 MiB range each, read round-robin (16 B each)."""
    board = _board(seed)
    addresses = {}
    for pid in range(1, processes + 1):
        addresses[pid] = board.ralloc(pid, 4 * MIB).value
        board.rwrite(pid, addresses[pid], pid.to_bytes(16, "little"))
    return [
        board.rread(pid, va, 16).latency_ns for _ in range(rounds) for pid, va in addresses.items()
    ]


def ralloc_latency_ns(nbytes: int, repeats: int, seed: int = 0) -> float:
    """Median ralloc latency for `nbytes`, freeing between calls."""
    board = _board(seed)
    samples = []
    for _ in range(repeats):
        va, latency = board.ralloc(1, nbytes)
        samples.append(latency)
        board.rfree(1, va)
    return statistics.median(samples)


def clio_figures(seed: int = 0) -> list[Figure]:
    sixteen = read_latencies_ns(16, 10_000, seed)
    figures = [
        Figure("clio read 16 B median", statistics.median(sixteen) / 1e3, 2.5, "us"),
        Figure("clio read 16 B p99", percentile(sixteen, 99) / 1e3, 3.2, "us"),
    ]
    for nbytes, paper in READ_SIZES_PAPER_US.items():
        median = statistics.median(read_latencies_ns(nbytes, 1_000, seed + nbytes))
        label = f"{nbytes // KIB} KB" if nbytes >= KIB else f"{nbytes} B"
        figures.append(Figure(f"clio read {label}, size sweep", median / 1e3, paper, "us"))
    for processes, rounds in ((1, 2_000), (1_000, 3)):
        median = statistics.median(multi_process_latencies_ns(processes, rounds, seed))
        figures.append(
            Figure(f"clio read median, {processes:,} process(es)", median / 1e3, 2.5, "us")
        )
    figures.append(Figure("clio ralloc 4 MB", ralloc_latency_ns(4 * MIB, 9, seed) / 1e3, 36, "us"))
    figures.append(Figure("clio ralloc 1 GB", ralloc_latency_ns(GIB, 9, seed) / 1e3, 320, "us"))
    return figures
