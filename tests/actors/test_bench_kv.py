"""`tetriserve bench kv` moves pages through the real KV path and writes its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.actors


def test_bench_kv_writes_one_row_per_page_size(tmp_path: Path) -> None:
    out = tmp_path / "kv.json"
    done = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "bench", "kv", "--total-mib", "4",
         "--repeats", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "RAY_ADDRESS": "local"},  # a cluster of its own
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [row["page_bytes"] // 1024 for row in rows] == [63, 511, 2047]  # 64 KiB, 512 KiB, 2 MiB
    for row in rows:
        assert set(row) == {"page_bytes", "write_GBps", "read_GBps", "memcpy_GBps",
                            "write_ratio", "read_ratio"}  # fmt: skip
        assert row["write_ratio"] == pytest.approx(row["write_GBps"] / row["memcpy_GBps"], 0.01)
        assert row["read_ratio"] == pytest.approx(row["read_GBps"] / row["memcpy_GBps"], 0.01)
    assert "write/memcpy" in done.stdout
