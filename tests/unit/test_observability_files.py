"""The shipped alert rules pass promtool's check and their own rule unit tests
(deploy/prometheus/alerts_test.yml), and the shipped Grafana dashboard is what
deploy/grafana_dashboard.py builds. Whether their queries find data on a live deployment is
tests/e2e/test_metrics.py's job."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy import grafana_dashboard

RULES = Path(grafana_dashboard.__file__).parent / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed (deploy/test.sh installs Debian's prometheus)"
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=RULES)


def test_promtool_checks_the_rules() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_rules_pass_their_unit_tests() -> None:
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    fired = {
        case["alertname"]
        for test in yaml.safe_load((RULES / "alerts_test.yml").read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert alerts <= fired, f"no test fires {sorted(alerts - fired)}"
    assert {"TetriserveTTFTSLOBurn", "TetriserveKVTransferFailures"} <= alerts
    assert {"TetriserveMemoryNodeNearFull", "TetriserveInstanceDown"} <= alerts
    assert "Tetriserve429sRising" in alerts


def test_the_shipped_dashboard_is_the_built_one() -> None:
    shipped = grafana_dashboard.OUTPUT.read_text()
    assert shipped == grafana_dashboard.dashboard_json(), (
        "deploy/grafana/tetriserve.json is stale: python -m deploy.grafana_dashboard"
    )


def test_every_panel_queries_prometheus_with_distinct_ref_ids() -> None:
    dashboard = json.loads(grafana_dashboard.OUTPUT.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(set(refs)) == len(refs) and all(refs), panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    titles = " ".join(p["title"] for p in panels).lower()
    for topic in ("first token", "inter-token", "end-to-end", "error", "waiting", "kv bytes"):
        assert topic in titles
    for topic in ("failed", "tenant", "drf", "adapter", "role", "flips"):
        assert topic in titles


@pytest.mark.parametrize(
    "expr",
    [q for _, q in grafana_dashboard.panel_queries(grafana_dashboard.OUTPUT.read_text())],
)
def test_every_panel_query_parses(expr: str, tmp_path: Path) -> None:
    # promtool parses PromQL only inside rules: each query becomes a recording rule.
    rules = {
        "groups": [
            {
                "name": "q",
                "rules": [{"record": "q", "expr": expr.replace("$__rate_interval", "1m")}],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
