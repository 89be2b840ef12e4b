"""The benchmarks' server ports: free now, and never a port a Ray node takes by default."""

from __future__ import annotations

import pytest

from deploy import bench_servers


class FakeSocket:
    """A socket whose bind to port 0 gets the next port of a list the test sets."""

    ports: list[int] = []

    def __enter__(self) -> FakeSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def bind(self, address: tuple[str, int]) -> None:
        self.port = FakeSocket.ports.pop(0)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


def test_a_free_port_is_never_one_of_rays_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeSocket.ports = [52365, 8265, 41234]
    monkeypatch.setattr(bench_servers.socket, "socket", FakeSocket)
    assert bench_servers.free_port() == 41234


def test_a_free_port_can_be_bound() -> None:
    port = bench_servers.free_port()
    with bench_servers.socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert port not in bench_servers.RAY_DEFAULT_PORTS
