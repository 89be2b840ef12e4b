"""deploy/kuberay/tetriserve.yaml: the RayService against KubeRay's own CRD schema (pinned in
deploy/kuberay/crd/), the core objects against Kubernetes' schemas (kubernetes-validate), and
the Serve config it carries against Ray Serve's schema and tetriserve's DeploymentConfig, with
every resource a role claims offered by a worker group."""

from __future__ import annotations

import copy
import hashlib
import importlib
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from cluster.config import DeploymentConfig

KUBERAY = Path(__file__).resolve().parents[2] / "deploy" / "kuberay"
MANIFEST = KUBERAY / "tetriserve.yaml"
CRD = KUBERAY / "crd" / "ray.io_rayservices.yaml"
KUBERNETES_VERSION = "1.33"


def documents() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text())}


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused where Kubernetes would prune them (an object
    with `properties` and no `additionalProperties` or x-kubernetes-preserve-unknown-fields),
    as `kubectl apply --validate=strict` refuses them."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    tightened = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        tightened["additionalProperties"] = False
    return tightened


def rayservice_validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(CRD.read_text())
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return jsonschema.Draft7Validator(strict(served["schema"]["openAPIV3Schema"]))


def test_the_pinned_crd_is_the_one_its_source_names() -> None:
    source = (KUBERAY / "crd" / "SOURCE").read_text()
    pinned = re.search(r"sha256:\s+([0-9a-f]{64})", source)
    assert pinned, "deploy/kuberay/crd/SOURCE names no sha256"
    assert hashlib.sha256(CRD.read_bytes()).hexdigest() == pinned.group(1)
    assert "v1.7.0" in source


def test_rayservice_validates_against_kuberays_schema() -> None:
    service = documents()["RayService"]
    assert service["apiVersion"] == "ray.io/v1"
    errors = sorted(rayservice_validator().iter_errors(service), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


@pytest.mark.parametrize(
    "break_it",
    [
        lambda s: s["spec"]["rayClusterConfig"].update(workerGroupSpec=[]),  # a typo
        lambda s: s["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].pop("groupName"),
        lambda s: s["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].update(replicas="one"),
    ],
)
def test_the_schema_check_refuses_a_broken_rayservice(break_it) -> None:
    broken = copy.deepcopy(documents()["RayService"])
    break_it(broken)
    assert list(rayservice_validator().iter_errors(broken))


@pytest.mark.parametrize("kind", ["ConfigMap", "Service"])
def test_core_objects_validate_against_kubernetes(kind: str) -> None:
    kubernetes_validate.validate(documents()[kind], KUBERNETES_VERSION, strict=True)


def test_kubernetes_validate_refuses_an_unknown_field() -> None:
    broken = copy.deepcopy(documents()["Service"])
    broken["spec"]["selectors"] = broken["spec"]["selector"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def serve_config() -> ServeDeploySchema:
    return ServeDeploySchema.model_validate(
        yaml.safe_load(documents()["RayService"]["spec"]["serveConfigV2"])
    )


def test_the_serve_config_builds_a_deployment_config() -> None:
    (app,) = serve_config().applications
    assert app.import_path == "deploy.app_builder:app_from_args"
    module, name = app.import_path.split(":")
    assert callable(getattr(importlib.import_module(module), name))
    config = DeploymentConfig(**app.args)
    assert config.device == "cuda" and config.chunk_tokens  # nothing profiled on the head
    for servicer in serve_config().grpc_options.grpc_servicer_functions:
        module, name = servicer.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), name))


def _groups() -> list[dict]:
    cluster = documents()["RayService"]["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]


def _gpus(group: dict) -> float:
    (container,) = group["template"]["spec"]["containers"]
    return float(container["resources"]["limits"].get("nvidia.com/gpu", 0))


def test_every_role_lands_on_a_group_that_offers_what_it_claims() -> None:
    (app,) = serve_config().applications
    config = DeploymentConfig(**app.args)
    counts = {
        "prefill": config.prefill,
        "decode": config.decode,
        "memory_node": config.memory_nodes,
    }
    claimed: dict[int, dict[str, float]] = {}
    for role, placement in config.placement.items():
        offering = [
            i
            for i, group in enumerate(_groups())
            if placement.resources.keys() <= group.get("resources", {}).keys()
            and placement.num_gpus <= _gpus(group)
        ]
        assert len(offering) == 1, f"{role} fits {len(offering)} groups"
        (index,) = offering
        wanted = {**placement.resources, "GPU": placement.num_gpus}
        for name, amount in wanted.items():
            total = claimed.setdefault(index, {})
            total[name] = total.get(name, 0.0) + amount * counts.get(role, 1)
    for index, total in claimed.items():
        group = _groups()[index]
        offered = {k: float(v) for k, v in group.get("resources", {}).items()}
        replicas = group.get("replicas", 1)
        offered["GPU"] = _gpus(group)
        for name, amount in total.items():
            assert amount <= offered[name] * replicas, (index, name)


def test_the_service_selects_the_serving_head_and_its_ports() -> None:
    service = documents()["Service"]["spec"]
    head = documents()["RayService"]["spec"]["rayClusterConfig"]["headGroupSpec"]
    labels = head["template"]["metadata"]["labels"]
    own = {k: v for k, v in service["selector"].items() if not k.startswith("ray.io/")}
    assert own.items() <= labels.items()
    (container,) = head["template"]["spec"]["containers"]
    exposed = {port["containerPort"] for port in container["ports"]}
    assert {port["targetPort"] for port in service["ports"]} <= exposed
    config = serve_config()
    assert {config.http_options.port, config.grpc_options.port} <= exposed


def test_the_head_makes_the_model_and_every_pod_maps_shared_memory() -> None:
    (app,) = serve_config().applications
    model_dir = app.args["model_dir"]
    head, *workers = _groups()
    (init,) = head["template"]["spec"]["initContainers"]
    assert init["command"][-1] == model_dir  # the workers get it through Ray (no shared FS)
    (container,) = head["template"]["spec"]["containers"]
    assert any(model_dir.startswith(m["mountPath"]) for m in container["volumeMounts"])
    for group in [head, *workers]:
        (container,) = group["template"]["spec"]["containers"]
        assert "/dev/shm" in {m["mountPath"] for m in container["volumeMounts"]}
        assert {"configMapRef": {"name": "tetriserve-env"}} in container["envFrom"]
