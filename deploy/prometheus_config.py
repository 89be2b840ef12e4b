"""The Prometheus scrape configuration for a deployment: one target per actor exporter.

Ports follow actors/metrics.py: base (ingress, on the HTTP port's /metrics instead), base+1
scheduler (which also exports what it polls from switches and memory nodes), base+10+i
prefill i, base+40+i decode i.
"""

from __future__ import annotations

from cluster.config import DeploymentConfig


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


def scrape_config(config: DeploymentConfig, interval_s: float = 5.0) -> str:
    """A prometheus.yml that scrapes the ingress and every actor of `config`."""
    targets = [f"{config.host}:{config.port}"]
    actors = [f"{config.host}:{port}" for port in metrics_ports(config).values()]
    lines = [
        "global:",
        f"  scrape_interval: {interval_s:g}s",
        "scrape_configs:",
        "  - job_name: tetriserve-ingress",
        "    metrics_path: /metrics",
        "    static_configs:",
        f"      - targets: [{', '.join(repr(t) for t in targets)}]",
    ]
    if actors:
        lines += [
            "  - job_name: tetriserve-actors",
            "    static_configs:",
            f"      - targets: [{', '.join(repr(t) for t in actors)}]",
        ]
    return "\n".join(lines) + "\n"
