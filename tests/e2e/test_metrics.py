"""A real Prometheus server scrapes the ingress and every actor of a running deployment,
the actors found through the file_sd targets file written from their own addresses, with
the shipped alert rules loaded: every query of the shipped Grafana dashboard and every
signal an alert reads returns data, and each engine's own vLLM metrics arrive labelled
with their instance and its role."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import ray
from ray import serve

from cluster.config import DeploymentConfig
from deploy.app_builder import build_app, shut_down
from deploy.prometheus_config import actor_targets, metrics_ports, scrape_config, write_targets
from tests.prometheus_support import (
    assert_dashboard_and_alerts_find_data,
    running_prometheus,
    wait_for,
)
from tests.support import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

METRICS_BASE_PORT = 19400


@pytest.fixture(scope="module")
def deployment(tiny_model: Path) -> Iterator[DeploymentConfig]:
    config = DeploymentConfig(
        model_dir=tiny_model, port=free_port(), metrics_port=METRICS_BASE_PORT
    )
    ray.init(namespace="tetriserve-metrics-test", include_dashboard=False)
    serve.start(http_options={"host": config.host, "port": config.port})
    serve.run(build_app(config), name="tetriserve", route_prefix="/")
    yield config
    shut_down(config)


@pytest.fixture(scope="module")
def prometheus(
    deployment: DeploymentConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("prometheus")
    write_targets(workdir / "targets.json", actor_targets(deployment))
    config = workdir / "prometheus.yml"
    config.write_text(scrape_config(deployment, workdir / "targets.json", interval_s=1))
    with running_prometheus(config, workdir) as url:
        yield url


def test_prometheus_scrapes_every_stage(deployment: DeploymentConfig, prometheus: str) -> None:
    base = f"http://{deployment.host}:{deployment.port}"
    prompt = "metrics " * 70  # several KV pages
    for _ in range(3):
        reply = httpx.post(
            f"{base}/v1/completions",
            json={"model": "base:r16", "prompt": prompt, "max_tokens": 6, "temperature": 0},
            timeout=120,
        )
        assert reply.status_code == 200
    targets = len(metrics_ports(deployment)) + 1
    up = wait_for(prometheus, f"count(up == 1) == {targets}")
    assert float(up[0]["value"][1]) == targets
    served = wait_for(
        prometheus, 'tetriserve:e2e_request_latency_seconds_count{model="base:r16"} >= 3'
    )
    assert float(served[0]["value"][1]) >= 3
    assert wait_for(prometheus, "tetriserve:time_to_first_token_seconds_count >= 3")
    assert wait_for(prometheus, 'tetriserve:request_success_total{finished_reason="length"} >= 3')
    loaded = wait_for(prometheus, "sum(tetriserve:kv_tokens_loaded_total) >= 3 * 70")
    assert float(loaded[0]["value"][1]) >= 3 * 70  # over every decode instance
    assert wait_for(prometheus, 'tetriserve:kv_transfer_bytes_total{direction="from_memory"} > 0')
    depths = wait_for(prometheus, "tetriserve:num_requests_waiting")
    assert {"prefill-0", "decode-0", "global-scheduler"} <= {s["metric"]["actor"] for s in depths}
    assert wait_for(prometheus, "tetriserve:memory_node_pages_in_use")
    assert wait_for(prometheus, "tetriserve:kv_compression_ratio >= 1")


def test_every_exporter_answers_at_the_address_its_target_names(
    deployment: DeploymentConfig, tmp_path: Path
) -> None:
    targets = tmp_path / "targets.json"
    assert write_targets(targets, actor_targets(deployment))
    assert not write_targets(targets, actor_targets(deployment))  # unchanged: not rewritten
    groups = json.loads(targets.read_text())
    node = ray.util.get_node_ip_address()
    assert {g["labels"]["actor"]: g["labels"]["role"] for g in groups} == {
        "global-scheduler": "scheduler",
        **deployment.instance_roles(),
    }
    for group in groups:
        (target,) = group["targets"]
        assert target.rsplit(":", 1)[0] == node  # the node's address, dialable from others
        exposition = httpx.get(f"http://{target}/metrics", timeout=10).text
        assert "tetriserve:num_requests_waiting" in exposition


def test_every_dashboard_query_and_alert_signal_returns_data(
    deployment: DeploymentConfig, prometheus: str
) -> None:
    base = f"http://{deployment.host}:{deployment.port}"
    refused = httpx.post(f"{base}/v1/completions", json={"model": "base:nope", "prompt": "x"})
    assert refused.status_code == 404
    assert wait_for(prometheus, 'tetriserve:api_errors_total{code="404"} >= 1')
    assert_dashboard_and_alerts_find_data(prometheus)


def test_engines_vllm_metrics_carry_their_instance_and_role(
    deployment: DeploymentConfig, prometheus: str
) -> None:
    found = wait_for(prometheus, "count by (actor, role) (vllm:num_requests_running)")
    labels = {(s["metric"]["actor"], s["metric"]["role"]) for s in found}
    assert labels == set(deployment.instance_roles().items())
    assert wait_for(prometheus, "sum(vllm:prompt_tokens_total) >= 3 * 70")
