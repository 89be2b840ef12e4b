"""`tetriserve make-model`: its adapter flags and what it reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.cli import main


def test_many_adapters_are_summed_up_by_rank(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    with pytest.raises(SystemExit) as ended:
        main(["make-model", "--out", str(out), "--adapters", "9", "--ranks", "8,16"])
    assert ended.value.code == 0
    printed = capsys.readouterr().out
    assert "adapters:   9 under" in printed
    assert "(5 of rank 8, 4 of rank 16)" in printed
    assert sorted(path.name for path in (out / "adapters").iterdir())[-1] == "a008-r8"


def test_a_few_adapters_are_listed_one_by_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["make-model", "--out", str(tmp_path / "m"), "--adapters", "2", "--ranks", "16"])
    assert ended.value.code == 0
    printed = capsys.readouterr().out
    assert "adapter:    a000-r16 rank 16" in printed
    assert "adapter:    a001-r16 rank 16" in printed


@pytest.mark.parametrize(
    "flags", [["--ranks", "8,x"], ["--ranks", "8,0"], ["--ranks", ""], ["--adapters", "-1"]]
)
def test_bad_adapter_flags_are_usage_errors(tmp_path: Path, flags: list[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["make-model", "--out", str(tmp_path / "m"), *flags])
    assert ended.value.code == 2
    assert not (tmp_path / "m").exists()
