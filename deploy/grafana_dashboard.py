"""The Grafana dashboard of a tetriserve deployment, built with grafana-foundation-sdk and
written to deploy/grafana/tetriserve.json (`python -m deploy.grafana_dashboard`).

It reads what Prometheus scrapes with the configuration `serve` writes
(deploy/prometheus_config.py): the ingress's request metrics, each actor's exporter (its
targets labelled `actor` and `role`, the role an instance holds now), what the scheduler
polls from switches and memory nodes (actors/metrics.py), and each engine's own `vllm:*`
metrics. tests/e2e/test_metrics.py runs every panel's query against a live deployment.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUTPUT = Path(__file__).parent / "grafana" / "tetriserve.json"
RATE = "$__rate_interval"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    title: str
    unit: str
    queries: tuple[Query, ...]
    description: str = ""


def _quantiles(metric: str) -> tuple[Query, ...]:
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by (le) (rate(tetriserve:{metric}_bucket[{RATE}])))",
            f"p{round(q * 100)}",
        )
        for q in (0.5, 0.9, 0.99)
    )


ROWS: dict[str, tuple[PanelSpec, ...]] = {
    "Latency (as clients see it, at the ingress)": (
        PanelSpec("Time to first token", "s", _quantiles("time_to_first_token_seconds")),
        PanelSpec("Inter-token latency", "s", _quantiles("inter_token_latency_seconds")),
        PanelSpec("End-to-end latency", "s", _quantiles("e2e_request_latency_seconds")),
    ),
    "Traffic": (
        PanelSpec(
            "Requests finished, by reason",
            "reqps",
            (
                Query(
                    f"sum by (finished_reason) (rate(tetriserve:request_success_total[{RATE}]))",
                    "{{finished_reason}}",
                ),
            ),
        ),
        PanelSpec(
            "Error answers, by status code",
            "reqps",
            (Query(f"sum by (code) (rate(tetriserve:api_errors_total[{RATE}]))", "{{code}}"),),
            "4xx and 5xx answers in OpenAI's error shape (gRPC: the HTTP status they map from).",
        ),
        PanelSpec(
            "Tokens",
            "short",
            (
                Query(f"sum(rate(tetriserve:prompt_tokens_total[{RATE}]))", "prompt tokens/s"),
                Query(
                    f"sum(rate(tetriserve:generation_tokens_total[{RATE}]))",
                    "generated tokens/s",
                ),
            ),
        ),
    ),
    "Queues and roles": (
        PanelSpec(
            "Requests waiting, by role",
            "short",
            (
                Query(
                    'sum by (role) (tetriserve:num_requests_waiting{job="tetriserve-actors"})',
                    "{{role}}",
                ),
            ),
            "Queued at the scheduler, in prefill queues, and in decode admission.",
        ),
        PanelSpec(
            "Requests running, by role",
            "short",
            (
                Query(
                    'sum by (role) (tetriserve:num_requests_running{job="tetriserve-actors"})',
                    "{{role}}",
                ),
            ),
        ),
        PanelSpec(
            "Instances answering, by role",
            "short",
            (
                Query(
                    "sum by (instance_role) (tetriserve:instance_up)",
                    "{{instance_role}}",
                ),
            ),
            "Serving instances that answered the scheduler's last monitor round.",
        ),
        PanelSpec(
            "Role flips",
            "short",
            (
                Query(
                    f"sum by (to_role) (increase(tetriserve:instance_flips_total[{RATE}]))",
                    "to {{to_role}}",
                ),
            ),
        ),
    ),
    "KV data plane": (
        PanelSpec(
            "KV bytes through switches",
            "Bps",
            (
                Query(
                    f"sum by (direction) (rate(tetriserve:kv_transfer_bytes_total[{RATE}]))",
                    "{{direction}}",
                ),
            ),
        ),
        PanelSpec(
            "KV transfers failed (recomputed), by reason",
            "reqps",
            (
                Query(
                    f"sum by (reason) (rate(tetriserve:kv_transfer_failures_total[{RATE}]))",
                    "{{reason}}",
                ),
            ),
        ),
        PanelSpec(
            "Prompt tokens loaded, not computed",
            "short",
            (
                Query(
                    f"sum by (actor) (rate(tetriserve:kv_tokens_loaded_total[{RATE}]))",
                    "{{actor}}",
                ),
            ),
        ),
        PanelSpec(
            "Memory-node pages, by tenant",
            "short",
            (
                Query(
                    "sum by (memory_node, tenant) (tetriserve:memory_node_tenant_pages)",
                    "{{memory_node}} {{tenant}}",
                ),
            ),
        ),
        PanelSpec(
            "Memory-node fill",
            "percentunit",
            (
                Query(
                    "tetriserve:memory_node_region_bytes / tetriserve:memory_node_capacity_bytes",
                    "{{memory_node}}",
                ),
            ),
        ),
        PanelSpec(
            "Switch DRF shares, by tenant",
            "percentunit",
            (Query("tetriserve:switch_tenant_share", "{{switch}} {{tenant}}"),),
            "Each tenant's dominant share of its switch's traffic.",
        ),
    ),
    "Adapters": (
        PanelSpec(
            "Adapter requests by tier: hits and loads",
            "reqps",
            (
                Query(
                    f"sum by (tier) (rate(tetriserve:adapter_tier_hits_total[{RATE}]))",
                    "{{tier}} hits",
                ),
                Query(
                    f"sum by (tier) (rate(tetriserve:adapter_tier_loads_total[{RATE}]))",
                    "{{tier}} loads",
                ),
                Query(
                    f"sum by (tier) (rate(tetriserve:adapter_tier_evictions_total[{RATE}]))",
                    "{{tier}} evictions",
                ),
            ),
        ),
        PanelSpec(
            "Adapter load time, p90 by tier",
            "s",
            (
                Query(
                    "histogram_quantile(0.9, sum by (le, tier)"
                    f" (rate(tetriserve:adapter_tier_load_seconds_bucket[{RATE}])))",
                    "{{tier}}",
                ),
            ),
        ),
    ),
    "Engines (vLLM's own metrics)": (
        PanelSpec(
            "Engine requests running and waiting",
            "short",
            (
                Query("sum by (actor) (vllm:num_requests_running)", "{{actor}} running"),
                Query("sum by (actor) (vllm:num_requests_waiting)", "{{actor}} waiting"),
            ),
        ),
        PanelSpec(
            "Engine KV cache usage",
            "percentunit",
            (Query("max by (actor) (vllm:kv_cache_usage_perc)", "{{actor}}"),),
        ),
    ),
}


def _panel(panel_id: int, spec: PanelSpec) -> Timeseries:
    panel = (
        Timeseries().id(panel_id).title(spec.title).unit(spec.unit).datasource(DATASOURCE).min(0)
    )
    if spec.description:
        panel = panel.description(spec.description)
    for ref, query in zip("ABCDEFGH", spec.queries, strict=False):
        panel = panel.with_target(
            Dataquery()
            .ref_id(ref)
            .expr(query.expr)
            .legend_format(query.legend)
            .datasource(DATASOURCE)
        )
    return panel


def build() -> Dashboard:
    dashboard = (
        Dashboard("tetriserve")
        .uid("tetriserve")
        .tags(["tetriserve", "vllm", "ray"])
        .refresh("10s")
        .time("now-30m", "now")
        .with_variable(DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    panel_id = 0
    for title, panels in ROWS.items():
        panel_id += 1
        dashboard = dashboard.with_row(Row(title).id(panel_id))
        for spec in panels:
            panel_id += 1
            dashboard = dashboard.with_panel(_panel(panel_id, spec))
    return dashboard


def dashboard_json() -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


def panel_queries(dashboard_text: str) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of a dashboard's JSON."""
    dashboard = json.loads(dashboard_text)
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def main() -> int:
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(dashboard_json())
    print(OUTPUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
