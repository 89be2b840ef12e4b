"""TetriInfer's published results: tetriserve's paper replay is judged against these.

Source: TetriInfer (arXiv 2401.11181), its evaluation on OPT-13B against vLLM. Each figure is
TetriInfer / vLLM: a reduction of 97% is 0.03, "2.4x
perf/$" is 2.4. None where the paper gives no number; `PAPER_DIRECTIONS` then says which
side the paper found better where it says so (HPLD perf/$: vLLM is better per dollar).
"""

from __future__ import annotations

METRICS: tuple[str, ...] = ("TTFT", "JCT", "resource", "perf/$")

PAPER_RATIOS: dict[str, dict[str, float | None]] = {
    "LPLD": {"TTFT": 0.56, "JCT": 0.60, "resource": None, "perf/$": 1.4},
    "LPHD": {"TTFT": 0.03, "JCT": 0.53, "resource": 0.62, "perf/$": 2.4},
    "HPLD": {"TTFT": 0.91, "JCT": 0.77, "resource": 1.43, "perf/$": None},
    "HPHD": {"TTFT": None, "JCT": 0.81, "resource": None, "perf/$": 1.1},
    "Mixed": {"TTFT": 0.15, "JCT": 0.50, "resource": 0.79, "perf/$": 1.9},
}

# Where the paper states only which system wins: "<1" or ">1" for TetriInfer / vLLM.
PAPER_DIRECTIONS: dict[tuple[str, str], str] = {("HPLD", "perf/$"): "<1"}
