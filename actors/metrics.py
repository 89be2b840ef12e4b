"""Prometheus metrics of every stage of the request path, exported with prometheus-client.

Names follow vLLM's where the meaning is the same, under the `tetriserve:` prefix:
the ingress records request latencies (TTFT, inter-token, end-to-end) and outcomes;
instances and the scheduler export queue depths; the switch and memory nodes export KV
bytes moved and pages in use. Each actor process serves its own registry on its own port
(`expose`); the ingress also answers `GET /metrics` on the HTTP port. A serving instance's
exporter also carries its engine's own `vllm:*` metrics (vLLM registers them in the same
process registry).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from actors.node_address import node_host

log = logging.getLogger(__name__)

# Ports relative to the deployment's metrics base port (documented in README.md).
PORT_OFFSETS = {"scheduler": 1, "switch": 2, "adapter-store": 3}
PREFILL_OFFSET, DECODE_OFFSET = 10, 40

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

TTFT = Histogram(
    "tetriserve:time_to_first_token_seconds",
    "Time from the request's arrival at the ingress to its first token.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
INTER_TOKEN = Histogram(
    "tetriserve:inter_token_latency_seconds",
    "Time between two successive token steps of one request.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
E2E = Histogram(
    "tetriserve:e2e_request_latency_seconds",
    "Time from the request's arrival at the ingress to its last token.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
REQUESTS = Counter(
    "tetriserve:request_success",
    "Requests that ended, by finish reason (length, stop, abort, error).",
    ["model", "finished_reason"],
)
PROMPT_TOKENS = Counter("tetriserve:prompt_tokens", "Prompt tokens served.", ["model"])
GENERATION_TOKENS = Counter("tetriserve:generation_tokens", "Tokens generated.", ["model"])
RUNNING = Gauge("tetriserve:num_requests_running", "Requests an instance is running.", ["actor"])
WAITING = Gauge("tetriserve:num_requests_waiting", "Requests queued at a stage.", ["actor"])
KV_TOKENS_LOADED = Counter(
    "tetriserve:kv_tokens_loaded",
    "Prompt tokens a decode instance did not compute: read from memory nodes, or found in"
    " its own prefix cache.",
    ["actor"],
)

KV_FAILURES = Counter(
    "tetriserve:kv_transfer_failures",
    "Requests whose KV did not travel from prefill to decode through memory nodes, so that"
    " the decode recomputed it, by reason: alloc (no pages could be leased), lease_expired"
    " (the lease ran out before it was written or read), load (fewer prompt tokens arrived"
    " than the lease held: a save or a load failed).",
    ["actor", "reason"],
)

KV_FAILURE_REASONS = ("alloc", "lease_expired", "load")
INSTANCE_ROLES = ("prefill", "decode")

API_ERRORS = Counter(
    "tetriserve:api_errors",
    "Requests answered with an error (OpenAI's error shape), by HTTP status code; gRPC"
    " refusals count under the HTTP status they map from.",
    ["code"],
)
API_ERROR_CODES = (400, 404, 413, 429, 500)

# Where an instance finds a LoRA adapter: `host` is the instance's machine (files fetched
# from the adapter store); a miss there is a load into it.
ADAPTER_TIERS = ("host",)
ADAPTER_HITS = Counter(
    "tetriserve:adapter_tier_hits", "Requests whose adapter a tier already held.", ["actor", "tier"]
)
ADAPTER_LOADS = Counter(
    "tetriserve:adapter_tier_loads", "Adapters loaded into a tier.", ["actor", "tier"]
)
ADAPTER_EVICTIONS = Counter(
    "tetriserve:adapter_tier_evictions", "Adapters evicted from a tier.", ["actor", "tier"]
)
ADAPTER_LOAD_SECONDS = Histogram(
    "tetriserve:adapter_tier_load_seconds",
    "Time to load an adapter into a tier.",
    ["actor", "tier"],
    buckets=_LATENCY_BUCKETS,
)


def start_instance_series(actor: str) -> None:
    """Every labelled series a serving instance exports, at 0 from its start: a rate or
    an alert over them finds data before the first event (Prometheus's advice for
    counters with labels)."""
    for reason in KV_FAILURE_REASONS:
        KV_FAILURES.labels(actor, reason)
    for tier in ADAPTER_TIERS:
        for family in (ADAPTER_HITS, ADAPTER_LOADS, ADAPTER_EVICTIONS, ADAPTER_LOAD_SECONDS):
            family.labels(actor, tier)


def start_ingress_series() -> None:
    for code in API_ERROR_CODES:
        API_ERRORS.labels(str(code))


def kv_failed(actor: str, request_id: str, reason: str, detail: str) -> None:
    """A request whose KV will not travel from prefill to decode (its decode recomputes
    it): logged with its id, and counted by reason."""
    log.warning(
        "KV of %s did not travel (%s: %s); its decode recomputes", request_id, reason, detail
    )
    KV_FAILURES.labels(actor, reason).inc()


def kv_failures(actor: str) -> dict[str, int]:
    """This process's count of `actor`'s KV failures, by reason (those that happened)."""
    counts = {
        reason: REGISTRY.get_sample_value(
            "tetriserve:kv_transfer_failures_total", {"actor": actor, "reason": reason}
        )
        for reason in KV_FAILURE_REASONS
    }
    return {reason: int(count) for reason, count in counts.items() if count}


class ClusterStats:
    """What the scheduler knows of the cluster, read at scrape time in its process: KV bytes
    through switches and their tenants' DRF shares, pages and bytes held by memory nodes
    (as last polled by the cluster monitor, which fills this cache), and each serving
    instance's role, whether it answered, and its flips (read from the scheduler itself
    through `instances` and `flips`, their one owner)."""

    def __init__(
        self,
        instances: Callable[[], dict[str, tuple[str, bool]]] = dict,
        flips: Callable[[], list[tuple[str, str]]] = list,
        tenant_names: Mapping[int, str] | None = None,
    ) -> None:
        self.instances, self.flips = instances, flips
        self.tenant_names = tenant_names if tenant_names is not None else {}
        self.switch_bytes: dict[str, tuple[int, int]] = {}  # switch -> (to nodes, from nodes)
        self.compression_ratio: dict[str, float] = {}  # switch -> bytes carried / on wire
        self.switch_shares: dict[str, dict[str, float]] = {}  # switch -> tenant -> share
        self.pages_in_use: dict[str, int] = {}
        self.tenant_pages: dict[str, dict[int, int]] = {}  # memory node -> tenant -> pages
        self.region_bytes: dict[str, int] = {}
        self.capacity_bytes: dict[str, int] = {}

    def tenant(self, tenant: int | str) -> str:
        """A tenant's label: the model name requests gave it, else its id."""
        try:
            return self.tenant_names.get(int(tenant), str(tenant))
        except ValueError:  # not a KV tenant id
            return str(tenant)

    def collect(self):
        yield from self._switches()
        yield from self._memory_nodes()
        yield from self._instances()

    def _switches(self):
        moved = CounterMetricFamily(
            "tetriserve:kv_transfer_bytes",
            "KV bytes that crossed a SuperNIC switch, to or from memory nodes.",
            labels=["switch", "direction"],
        )
        for switch, (inbound, outbound) in self.switch_bytes.items():
            moved.add_metric([switch, "to_memory"], inbound)
            moved.add_metric([switch, "from_memory"], outbound)
        yield moved
        ratio = GaugeMetricFamily(
            "tetriserve:kv_compression_ratio",
            "KV bytes a switch carried over the bytes its compression task put on the wire.",
            labels=["switch"],
        )
        for switch, value in self.compression_ratio.items():
            ratio.add_metric([switch], value)
        yield ratio
        yield self._by_tenant(
            "tetriserve:switch_tenant_share",
            "Each tenant's dominant share of its switch's traffic, as DRF counts it.",
            "switch",
            self.switch_shares,
        )

    def _memory_nodes(self):
        pages = GaugeMetricFamily(
            "tetriserve:memory_node_pages_in_use",
            "KV pages held by a memory node.",
            labels=["memory_node"],
        )
        for node, count in self.pages_in_use.items():
            pages.add_metric([node], count)
        yield pages
        yield self._by_tenant(
            "tetriserve:memory_node_tenant_pages",
            "KV pages a memory node holds in each tenant's address space.",
            "memory_node",
            self.tenant_pages,
        )
        for name, doc, values in (
            ("region_bytes", "Bytes of the memory node's regions given out.", self.region_bytes),
            ("capacity_bytes", "Bytes the memory node can give out.", self.capacity_bytes),
        ):
            gauge = GaugeMetricFamily(f"tetriserve:memory_node_{name}", doc, labels=["memory_node"])
            for node, value in values.items():
                gauge.add_metric([node], value)
            yield gauge

    def _by_tenant(
        self, name: str, doc: str, owner: str, table: Mapping[str, Mapping[int | str, float]]
    ) -> GaugeMetricFamily:
        """A gauge per (owner, tenant) from owner -> tenant -> value, tenants by label."""
        gauge = GaugeMetricFamily(name, doc, labels=[owner, "tenant"])
        for key, tenants in table.items():
            for tenant, value in tenants.items():
                gauge.add_metric([key, self.tenant(tenant)], value)
        return gauge

    def _instances(self):
        states = self.instances()
        up = GaugeMetricFamily(
            "tetriserve:instance_up",
            "1 when a serving instance answered the scheduler's last monitor round, with the"
            " role it holds now.",
            labels=["instance_id", "instance_role"],
        )
        for name, (role, answered) in states.items():
            up.add_metric([name, role], 1.0 if answered else 0.0)
        yield up
        flips = CounterMetricFamily(
            "tetriserve:instance_flips",
            "Role flips of each serving instance, by the role it took.",
            labels=["instance_id", "to_role"],
        )
        counts = collections.Counter(self.flips())
        for name in states:
            for role in INSTANCE_ROLES:
                flips.add_metric([name, role], counts[name, role])
        yield flips


class _TextExposition(BaseHTTPRequestHandler):
    """Always the Prometheus text format, like vLLM's /metrics: content negotiation would
    switch to OpenMetrics, whose name escaping turns `tetriserve:x` into `tetriserve_x`."""

    def do_GET(self) -> None:
        body = generate_latest()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def expose(port: int | None, host: str | None = None) -> str | None:
    """Serves this process's metrics on `port` (None: not at all) at `host` (default: the
    node's address, actors/node_address.py); the "host:port" Prometheus scrapes, or None
    when nothing is served."""
    if port is None:
        return None
    host = host or node_host()
    try:
        server = ThreadingHTTPServer((host, port), _TextExposition)
    except OSError as exc:
        log.warning("metrics port %s:%s unavailable: %s", host, port, exc)
        return None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return f"{host}:{port}"
