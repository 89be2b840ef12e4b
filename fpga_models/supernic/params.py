"""Parameters of a SuperNIC (sNIC): ports, datapath stages, network tasks, fairness and scaling.

Datapath latency is the sum of its stages (MAC/PHY in, core, scheduler, each network task's
pipeline and throughput, MAC/PHY out, serialisation at the port speed); nothing here is an
end-to-end number. Each network task (NT) type has a per-instance throughput and pipeline
latency; `instances` says how many regions run it at start.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MIB = 1024 * 1024


class TaskSpec(BaseModel):
    """One NT type as loaded into a reconfigurable region."""

    model_config = ConfigDict(frozen=True)

    throughput_gbps: float = Field(gt=0)
    pipeline_ns: float = Field(ge=0)
    state_bytes_per_gbps: float = Field(0.0, ge=0)  # NT memory a tenant's traffic occupies


def _default_tasks() -> dict[str, TaskSpec]:
    return {
        "checksum": TaskSpec(throughput_gbps=100.0, pipeline_ns=40.0),
        "verify": TaskSpec(throughput_gbps=100.0, pipeline_ns=40.0),
        "compress": TaskSpec(throughput_gbps=40.0, pipeline_ns=160.0, state_bytes_per_gbps=8192),
        "decompress": TaskSpec(throughput_gbps=80.0, pipeline_ns=120.0, state_bytes_per_gbps=8192),
        "replicate": TaskSpec(throughput_gbps=100.0, pipeline_ns=20.0),
    }


class SuperNICParams(BaseModel):
    model_config = ConfigDict(frozen=True)

    # --- ports and fixed datapath stages (ns) ------------------------------------------------
    port_gbps: float = 100.0  # ingress and egress each
    mtu_bytes: int = 1500
    mac_phy_ns: float = 490.0  # 100G MAC + PCS/FEC, each direction
    core_ns: float = 196.0  # parser, match-action table, packet-store write
    scheduler_ns: float = 64.0  # credit check and reservation across the chain
    peer_link_ns: float = 10.0  # cable to a peer sNIC

    # --- network tasks -------------------------------------------------------------------------
    tasks: dict[str, TaskSpec] = Field(default_factory=_default_tasks)
    instances: dict[str, int] = Field(
        default_factory=lambda: {
            "checksum": 1,
            "verify": 1,
            "compress": 1,
            "decompress": 1,
            "replicate": 1,
        }
    )
    credits_per_task: int = Field(8, ge=1)
    compression_level: int = 1

    # --- buffers ---------------------------------------------------------------------------
    packet_store_bytes: int = 4 * MIB
    task_memory_bytes: int = 64 * MIB
    ingress_queue_ns: float = 40_000.0  # longest a packet waits at its rate limiter

    # --- fairness and scaling ----------------------------------------------------------------
    epoch_ns: float = 20_000.0
    drf_run_ns: float = 3_000.0
    overload_window_ns: float = 10_000_000.0  # add an instance after this much overload
    region_load_ns: float = 5_000_000.0  # time to load an NT into a free region
    overload_threshold: float = 1.0  # demand / capacity
    max_instances_per_task: int = Field(4, ge=1)
