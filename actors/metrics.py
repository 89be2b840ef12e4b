"""Prometheus metrics of every stage of the request path, exported with prometheus-client.

Names follow vLLM's where the meaning is the same, under the `tetriserve:` prefix:
the ingress records request latencies (TTFT, inter-token, end-to-end) and outcomes;
instances and the scheduler export queue depths; the switch and memory nodes export KV
bytes moved and pages in use. Each actor process serves its own registry on its own port
(`expose`); the ingress also answers `GET /metrics` on the HTTP port.
"""

from __future__ import annotations

import logging
import threading
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
    """KV bytes through switches and pages held by memory nodes, as last polled by the
    cluster monitor; registered in the scheduler's process, read at scrape time."""

    def __init__(self) -> None:
        self.switch_bytes: dict[str, tuple[int, int]] = {}  # switch -> (to nodes, from nodes)
        self.compression_ratio: dict[str, float] = {}  # switch -> bytes carried / on wire
        self.pages_in_use: dict[str, int] = {}

    def collect(self):
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
        pages = GaugeMetricFamily(
            "tetriserve:memory_node_pages_in_use",
            "KV pages held by a memory node.",
            labels=["memory_node"],
        )
        for node, count in self.pages_in_use.items():
            pages.add_metric([node], count)
        yield pages


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
