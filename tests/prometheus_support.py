"""A real Prometheus server for the e2e tests (Debian's package, which deploy/test.sh
installs), and the check that the shipped Grafana dashboard and alert rules find data."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from deploy import grafana_dashboard
from deploy.prometheus_config import ALERT_RULES
from tests.support import free_port

SCRAPE_DEADLINE_S = 90


@contextlib.contextmanager
def running_prometheus(config: Path, workdir: Path) -> Iterator[str]:
    """Prometheus on `config` (checked by promtool first), at its URL until the block ends."""
    binary = shutil.which("prometheus")
    assert binary, "the prometheus server is not installed (deploy/test.sh installs it)"
    checked = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "prometheus.log").open("w"),
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def query(prometheus: str, expression: str) -> list[dict]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def wait_for(prometheus: str, expression: str) -> list[dict]:
    """The samples `expression` returns, once it returns any (the test fails if it never
    does within SCRAPE_DEADLINE_S, naming what Prometheus has)."""
    deadline = time.monotonic() + SCRAPE_DEADLINE_S
    while time.monotonic() < deadline:
        try:
            found = query(prometheus, expression)
        except httpx.HTTPError:
            found = []
        if found:
            return found
        time.sleep(1)
    known = query(prometheus, '{__name__=~"tetriserve:.*"}')
    names = sorted({(s["metric"]["__name__"], s["metric"].get("actor", "")) for s in known})
    pytest.fail(f"Prometheus never returned a sample for {expression}; it has {names}")


def alert_signals() -> set[str]:
    """The series the shipped alerts read: recorded signals, gauges, `up`."""
    groups = yaml.safe_load(ALERT_RULES.read_text())["groups"]
    exprs = [rule["expr"] for group in groups for rule in group["rules"] if "alert" in rule]
    return {name for expr in exprs for name in re.findall(r"\b(tetriserve:[\w:]+|up)\b", expr)}


def assert_dashboard_and_alerts_find_data(prometheus: str) -> None:
    """Every query of the shipped dashboard and every signal an alert reads returns data,
    and every rule evaluates without error."""
    dashboard = grafana_dashboard.panel_queries(grafana_dashboard.OUTPUT.read_text())
    for title, expr in dashboard:
        assert wait_for(prometheus, expr.replace("$__rate_interval", "1m")), title
    signals = alert_signals()
    assert {"tetriserve:instance_up", "tetriserve:ttft_slo_errors:ratio_rate5m"} <= signals
    for signal in signals:
        assert wait_for(prometheus, signal)
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    health = {rule["name"]: rule["health"] for group in rules for rule in group["rules"]}
    assert len(health) >= 12 and set(health.values()) == {"ok"}, health
