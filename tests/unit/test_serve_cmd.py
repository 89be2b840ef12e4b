"""`tetriserve serve`'s flags (shared by `bench workloads`) reach the deployment config;
bad values are refused."""

from __future__ import annotations

import pydantic
import pytest

from cluster.config import DeploymentConfig, RolePlacement, SchedulingConfig
from deploy.cli import build_parser
from deploy.serve_cmd import config_from_args


def _config(*flags: str):
    return config_from_args(build_parser().parse_args(["serve", *flags]))


def test_defaults_are_the_scheduling_config_defaults() -> None:
    assert _config().scheduling == SchedulingConfig()


def test_scheduling_flags_reach_the_config() -> None:
    scheduling = _config(
        "--stream-interval-ms", "0", "--stream-messages-per-s", "70", "--prefill-policy", "sjf",
        "--no-flip", "--max-queued-per-instance", "9", "--kv-lease-ttl-s", "2.5",
    ).scheduling  # fmt: skip
    assert scheduling.stream_interval_ms == 0 and scheduling.stream_messages_per_s == 70
    assert (scheduling.prefill_policy, scheduling.flip) == ("sjf", False)
    assert (scheduling.max_queued_per_instance, scheduling.kv_lease_ttl_s) == (9, 2.5)


def test_negative_stream_interval_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="stream_interval_ms"):
        _config("--stream-interval-ms", "-5")


def test_the_command_line_reports_a_refused_value_as_a_usage_error(capsys) -> None:
    from deploy.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--stream-interval-ms", "-5"])
    assert exit_info.value.code == 2
    assert "stream_interval_ms" in capsys.readouterr().err


def test_bench_workloads_takes_the_same_scheduling_flags(tmp_path) -> None:
    from deploy.bench_workloads import _deployment

    flags = ["--dispatcher", "random", "--stream-interval-ms", "50", "--chunk-tokens", "128"]
    args = build_parser().parse_args(["bench", "workloads", *flags])
    config = _deployment(args, tmp_path, args.chunk_tokens)
    assert (config.scheduling.dispatcher, config.scheduling.stream_interval_ms) == ("random", 50)
    assert config.chunk_tokens == 128


@pytest.mark.parametrize("command", [["serve"], ["bench", "workloads"]])
def test_chunk_tokens_must_be_positive(command: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*command, "--chunk-tokens", "0"])
    assert exit_info.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err


def test_prefill_and_decode_instances_of_one_index_share_their_cores() -> None:
    from cluster.config import DeploymentConfig

    config = DeploymentConfig(prefill=2, decode=1)
    assert config.instance_roles() == {
        "prefill-0": "prefill", "prefill-1": "prefill", "decode-0": "decode",
    }  # fmt: skip
    partners = config.core_partners(cpu_engines=True)
    assert partners == {"decode-0": "prefill-0", "prefill-0": "decode-0"}
    assert config.core_partners(cpu_engines=False) == {}
    assert _config("--no-share-cores").core_partners(cpu_engines=True) == {}


def test_prefill_core_share_flag_reaches_the_config() -> None:
    assert _config().prefill_core_share == 0.5
    assert _config("--prefill-core-share", "1").prefill_core_share == 1.0
    with pytest.raises(pydantic.ValidationError, match="prefill_core_share"):
        _config("--prefill-core-share", "0")


def test_body_limit_flag_reaches_the_config() -> None:
    assert _config().max_body_bytes == 4 * 2**20
    assert _config("--max-body-bytes", "1024").max_body_bytes == 1024


def test_a_placement_file_says_what_each_role_claims(tmp_path) -> None:
    placement = tmp_path / "placement.yaml"
    placement.write_text(
        "prefill: {resources: {node_a: 1}}\n"
        "decode: {num_cpus: 1, resources: {node_b: 1}}\n"
        "memory_node: {resources: {node_c: 0.5}}\n"
    )
    config = _config("--placement", str(placement))
    assert config.placed("prefill").resources == {"node_a": 1}
    assert (config.placed("decode").num_cpus, config.placed("decode").resources) == (
        1,
        {"node_b": 1},
    )
    assert config.placed("memory_node").resources == {"node_c": 0.5}
    assert config.placed("switch") == config.placed("ingress") == RolePlacement()


def test_json_placement_works_too_and_unknown_roles_or_fields_are_refused(tmp_path) -> None:
    placement = tmp_path / "placement.json"
    placement.write_text('{"scheduler": {"num_gpus": 0, "resources": {"head": 1}}}')
    assert _config("--placement", str(placement)).placed("scheduler").resources == {"head": 1}
    placement.write_text('{"router": {"num_cpus": 1}}')
    with pytest.raises(pydantic.ValidationError, match="router"):
        _config("--placement", str(placement))
    placement.write_text('{"decode": {"num_tpus": 1}}')
    with pytest.raises(pydantic.ValidationError, match="num_tpus"):
        _config("--placement", str(placement))
    placement.write_text("- prefill\n")
    with pytest.raises(SystemExit, match="mapping of roles"):
        _config("--placement", str(placement))


def test_cuda_engines_claim_a_gpu_each_or_an_equal_share_of_too_few() -> None:
    config = DeploymentConfig(prefill=1, decode=1)
    assert config.gpus_per_engine(4) == 1.0 and config.gpus_per_engine(1) == 0.5
    assert config.placed("decode", engine_gpus=0.5).num_gpus == 0.5
    assert config.placed("memory_node", engine_gpus=0.5).num_gpus == 0  # engines only
    assert config.placed("prefill").num_gpus == 0  # CPU engines claim nothing


def test_auto_device_is_decided_by_the_clusters_gpus_not_the_builders() -> None:
    assert DeploymentConfig().on_cluster(cluster_gpus=8).device == "cuda"
    assert DeploymentConfig().on_cluster(cluster_gpus=0).device == "cpu"
    assert DeploymentConfig(device="cpu").on_cluster(cluster_gpus=8).device == "cpu"


def test_pairs_that_share_cores_go_round_robin_to_nodes_that_fit_both() -> None:
    config = DeploymentConfig(prefill=3, decode=3)
    nodes = {"b": {"CPU": 2.0}, "a": {"CPU": 2.0}}
    homes = config.pair_nodes(nodes, engine_gpus=0.0, cpu_engines=True)
    assert homes == {
        "prefill-0": "a", "decode-0": "a", "prefill-1": "b", "decode-1": "b",
        "prefill-2": "a", "decode-2": "a",
    }  # fmt: skip
    assert config.engine_cores(homes) == {
        "prefill-0": 0, "decode-0": 1, "prefill-2": 2, "decode-2": 3,  # two pairs on a
        "prefill-1": 0, "decode-1": 1,
    }  # fmt: skip
    assert config.pair_nodes(nodes, engine_gpus=0.0, cpu_engines=False) == {}  # no pairs


def test_pairs_whose_members_are_placed_apart_are_left_to_spread() -> None:
    apart = {"prefill": {"resources": {"node_a": 1}}, "decode": {"resources": {"node_b": 1}}}
    config = DeploymentConfig(placement=apart)
    nodes = {"x": {"CPU": 1.0, "node_a": 1.0}, "y": {"CPU": 1.0, "node_b": 1.0}}
    assert config.pair_nodes(nodes, engine_gpus=0.0, cpu_engines=True) == {}
    assert config.engine_cores({}) == {"prefill-0": 0, "decode-0": 1}
    together = DeploymentConfig(placement={r: {"resources": {"node_a": 1}} for r in apart})
    node_a = {"x": {"node_a": 2.0}, "y": {"node_a": 1.0}}  # a pair claims 2
    assert set(together.pair_nodes(node_a, 0.0, cpu_engines=True).values()) == {"x"}
