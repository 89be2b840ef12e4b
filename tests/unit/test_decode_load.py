"""A decode instance's load report and admission view, from its decodes' progress."""

from __future__ import annotations

from cluster.decode_admission import RunningDecode
from cluster.decode_load import DecodeProgress, decode_load
from cluster.placement import InstanceLoad


def test_progress_is_seen_by_admission_as_kv_held_and_tokens_still_predicted() -> None:
    progress = DecodeProgress(prompt_tokens=40, predicted_output=10, heavy=False, generated=4)
    assert progress.view("r") == RunningDecode("r", kv_tokens=44, predicted_remaining=6)
    assert progress.work_left == 6
    overdue = DecodeProgress(prompt_tokens=40, predicted_output=10, heavy=False, generated=12)
    assert overdue.view("r").predicted_remaining == 0
    assert overdue.work_left == 1  # the next token, at least


def test_the_load_report_counts_free_kv_the_decode_mix_and_the_work_still_predicted() -> None:
    running = [
        DecodeProgress(prompt_tokens=100, predicted_output=200, heavy=True, generated=50),
        DecodeProgress(prompt_tokens=20, predicted_output=8, heavy=False, generated=2),
    ]
    load = decode_load(InstanceLoad("d", queued=1, running=2), running, 7, capacity_tokens=1000)
    assert load.free_kv_tokens == 1000 - 150 - 22
    assert (load.heavy_decodes, load.light_decodes) == (1, 1)
    assert load.predicted_tokens == 7 + 150 + 6
    assert (load.queued, load.running) == (1, 2)
    full = decode_load(InstanceLoad("d"), running, 0, capacity_tokens=100)
    assert full.free_kv_tokens == 0
