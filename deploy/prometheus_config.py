"""The Prometheus scrape configuration for a deployment: the ingress, and one target per
actor exporter, discovered from a file_sd targets file that lists the addresses the actors
really serve on (their nodes', actors/node_address.py).

Ports follow actors/metrics.py: base (ingress, on the HTTP port's /metrics instead), base+1
scheduler (which also exports what it polls from switches and memory nodes), base+10+i
prefill i, base+40+i decode i.
"""

from __future__ import annotations

import json
from pathlib import Path

from cluster.config import DeploymentConfig

TARGET_TIMEOUT_S = 5.0
ALERT_RULES = Path(__file__).parent / "prometheus" / "alerts.yml"


def metrics_ports(config: DeploymentConfig) -> dict[str, int]:
    """Actor name → its exporter port; empty when metrics are off."""
    from actors.metrics import DECODE_OFFSET, PORT_OFFSETS, PREFILL_OFFSET

    base = config.metrics_port
    if base is None:
        return {}
    ports = {"global-scheduler": base + PORT_OFFSETS["scheduler"]}
    for name, role in config.instance_roles().items():
        index = int(name.rsplit("-", 1)[1])
        ports[name] = base + (PREFILL_OFFSET if role == "prefill" else DECODE_OFFSET) + index
    return ports


def scrape_config(
    config: DeploymentConfig,
    targets_file: Path,
    interval_s: float = 5.0,
    rules: Path | None = ALERT_RULES,
) -> str:
    """A prometheus.yml that scrapes the ingress, and every actor exporter that
    `targets_file` lists (file-based discovery: Prometheus reads the file again whenever it
    changes, so actors that move are followed), and evaluates the alert `rules`."""
    ingress = f"{config.host}:{config.port}"
    lines = [
        "global:",
        f"  scrape_interval: {interval_s:g}s",
        f"  evaluation_interval: {interval_s:g}s",
        *(["rule_files:", f"  - {str(rules)!r}"] if rules is not None else []),
        "scrape_configs:",
        "  - job_name: tetriserve-ingress",
        "    metrics_path: /metrics",
        "    static_configs:",
        f"      - targets: [{ingress!r}]",
        "  - job_name: tetriserve-actors",
        "    file_sd_configs:",
        f"      - files: [{str(targets_file)!r}]",
        f"        refresh_interval: {interval_s:g}s",
    ]
    return "\n".join(lines) + "\n"


def actor_targets(config: DeploymentConfig) -> list[dict]:
    """The file_sd target groups of the deployment's exporters, at the addresses the actors
    serve them on (their nodes'): one group per actor, labelled with its name and the role
    it holds now (as the scheduler knows it: instances flip). An actor that does not answer
    (restarting) is left out until it does."""
    import ray

    roles = {"global-scheduler": "scheduler", **config.instance_roles(), **_current_roles()}
    groups = []
    for name in metrics_ports(config):  # the actors that export
        try:
            target = ray.get(ray.get_actor(name).metrics_target.remote(), timeout=TARGET_TIMEOUT_S)
        except (ValueError, ray.exceptions.RayError):  # no such actor yet, or it died
            continue
        if target is not None:
            groups.append({"targets": [target], "labels": {"actor": name, "role": roles[name]}})
    return groups


def write_targets(path: Path, groups: list[dict]) -> bool:
    """Writes the target groups as a file_sd file, whole (renamed into place, so Prometheus
    never reads half a file); True when they changed."""
    text = json.dumps(groups, indent=2) + "\n"
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_suffix(".tmp")
    staged.write_text(text)
    staged.replace(path)
    return True


def _current_roles() -> dict[str, str]:
    """Each serving instance's role now, from the scheduler (none while it does not answer:
    the deployment's first roles stand in)."""
    import ray

    try:
        scheduler = ray.get_actor("global-scheduler")
        return ray.get(scheduler.stats.remote(), timeout=TARGET_TIMEOUT_S)["roles"]
    except (ValueError, ray.exceptions.RayError):
        return {}
