"""Servers that a benchmark starts, waits for and stops: one OS process each, on loopback.

Lifecycle: `start` launches the command in a session of its own (so a Ctrl-C in the
terminal reaches only the benchmark, which then stops the servers in order), output goes to
a log file; `wait_ready` polls `GET /v1/models` until it answers 200, failing early when the
process exits; `stop` sends SIGINT, waits, then SIGKILLs whatever of the process group is
left. `running` is a context manager that stops every server it started, however the block
ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

READY_PATH = "/v1/models"


# Ports a Ray node binds by default whenever it starts (GCS, Serve's HTTP and gRPC, the
# dashboard, Ray Client, the dashboard agent). The OS may hand any of them out as a free
# port before a cluster starts, and the cluster then takes it from the server that was
# given it: 52365 lies in Linux's ephemeral range.
RAY_DEFAULT_PORTS = frozenset({6379, 8000, 8265, 9000, 10001, 52365})


def free_port() -> int:
    """A TCP port free on loopback now and none of Ray's defaults (another process may
    still take it later)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in RAY_DEFAULT_PORTS:
            return port


@dataclass(slots=True)
class ServerProcess:
    """One HTTP server in its own process group, with its output in `log_path`."""

    name: str
    command: Sequence[str]
    port: int
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                list(self.command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )

    def wait_ready(self, timeout_s: float = 900.0, poll_s: float = 1.0) -> float:
        """Seconds until the server answered; raises when it died or took too long."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout_s:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited during start-up\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + READY_PATH, timeout=5.0).status_code == 200:
                    return time.perf_counter() - started
            time.sleep(poll_s)
        raise TimeoutError(f"{self.name} not ready after {timeout_s:.0f} s\n{self.log_tail()}")

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGINT, then SIGKILL for the whole process group after `timeout_s`."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout_s)
        # The leader's children (engine cores, Ray workers) go with it; kill any left behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def log_tail(self, chars: int = 3000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]


@contextlib.contextmanager
def running(servers: Sequence[ServerProcess], timeout_s: float = 900.0) -> Iterator[None]:
    """Start every server, wait until all answer, and stop them all when the block ends."""
    # SIGTERM to the benchmark unwinds like Ctrl-C, so the servers are stopped either way.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for server in servers:
            print(f"[start] {server.name} on port {server.port} (log: {server.log_path})")
            server.start()
        for server in servers:
            seconds = server.wait_ready(timeout_s)
            print(f"[ready] {server.name} answered {READY_PATH} after {seconds:.0f} s")
        yield
    finally:
        for server in servers:
            print(f"[stop] {server.name}")
            server.stop()
        signal.signal(signal.SIGTERM, previous)
