"""What the scheduler exports of the cluster (actors/metrics.py ClusterStats): tenants by
the model name requests gave them, instances with their role now and whether they answered,
flips counted from 0 for every instance and role, memory-node fill."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from actors.metrics import ClusterStats
from cluster.kv_pages import tenant_id

BASE = tenant_id("/models/small", None)
SQL = tenant_id("/models/small", "sql")


def scraped(stats: ClusterStats) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(stats)
    return registry


def test_tenants_are_labelled_by_model_name_where_known() -> None:
    stats = ClusterStats(tenant_names={BASE: "base"})
    stats.tenant_pages["memory-0"] = {BASE: 3, SQL: 0}
    stats.switch_shares["switch-0"] = {str(BASE): 0.75, str(SQL): 0.25}
    registry = scraped(stats)
    pages = "tetriserve:memory_node_tenant_pages"
    assert registry.get_sample_value(pages, {"memory_node": "memory-0", "tenant": "base"}) == 3
    assert registry.get_sample_value(pages, {"memory_node": "memory-0", "tenant": str(SQL)}) == 0
    share = "tetriserve:switch_tenant_share"
    assert registry.get_sample_value(share, {"switch": "switch-0", "tenant": "base"}) == 0.75


def test_instances_report_role_and_answer_and_flips_start_at_zero() -> None:
    states = {"prefill-0": ("decode", True), "decode-0": ("decode", False)}
    flips = [("prefill-0", "decode"), ("prefill-0", "prefill"), ("prefill-0", "decode")]
    registry = scraped(ClusterStats(lambda: states, lambda: flips))
    up = "tetriserve:instance_up"
    assert registry.get_sample_value(up, {"instance_id": "prefill-0", "instance_role": "decode"})
    assert (
        registry.get_sample_value(up, {"instance_id": "decode-0", "instance_role": "decode"}) == 0
    )
    count = "tetriserve:instance_flips_total"
    assert registry.get_sample_value(count, {"instance_id": "prefill-0", "to_role": "decode"}) == 2
    assert registry.get_sample_value(count, {"instance_id": "prefill-0", "to_role": "prefill"}) == 1
    assert registry.get_sample_value(count, {"instance_id": "decode-0", "to_role": "prefill"}) == 0


def test_memory_node_region_and_capacity_bytes() -> None:
    stats = ClusterStats()
    stats.region_bytes["memory-0"] = 6 << 20
    stats.capacity_bytes["memory-0"] = 8 << 20
    registry = scraped(stats)
    node = {"memory_node": "memory-0"}
    used = registry.get_sample_value("tetriserve:memory_node_region_bytes", node)
    assert used / registry.get_sample_value("tetriserve:memory_node_capacity_bytes", node) == 0.75
