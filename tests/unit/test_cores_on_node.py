"""An engine's core numbers are counted on the node it runs on (ServingInstance): modulo
that node's cores, with nothing borrowed where it would be the engine's own core."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.instances.serving_instance import cores_on_this_node
from cluster.config import EngineConfig


def engine(cpu_cores: str | None, borrowed: str | None = None) -> EngineConfig:
    return EngineConfig(model_dir=Path("/m"), cpu_cores=cpu_cores, borrowed_cores=borrowed)


@pytest.mark.parametrize(
    ("cpus", "home", "borrowed", "expected"),
    [
        (2, "1", "0", {"cpu_cores": "1", "borrowed_cores": "0"}),
        (2, "3", "2", {"cpu_cores": "1", "borrowed_cores": "0"}),  # pair 1 on a 2-core node
        (2, "1", None, {"cpu_cores": "1", "borrowed_cores": None}),
        (1, "1", "0", {"cpu_cores": "0", "borrowed_cores": None}),  # one core: nothing to lend
        (16, "3", "2", {"cpu_cores": "3", "borrowed_cores": "2"}),
    ],
)
def test_cores_are_counted_on_this_node(
    monkeypatch: pytest.MonkeyPatch,
    cpus: int,
    home: str,
    borrowed: str | None,
    expected: dict,
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cpus)
    assert cores_on_this_node(engine(home, borrowed)) == expected


def test_an_engine_left_to_choose_its_cores_is_left_alone() -> None:
    assert cores_on_this_node(engine(None)) == {}
