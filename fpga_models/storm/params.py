"""Parameters of the Storm dataplane: RDMA NICs on an InfiniBand fabric and the hosts' RPC loop.

Component costs only (a doorbell, one NIC pipeline pass, a PCIe DMA, one switch traversal,
a host DRAM access, ...); round trips and throughputs are computed from them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from fpga_models.net import Framing, Stage

MIB = 1024 * 1024


class StormParams(BaseModel):
    model_config = ConfigDict(frozen=True)

    # --- NIC connection-state cache and processing engine -------------------------------------
    nic_cache_bytes: int = Field(2 * MIB, gt=0)
    connection_state_bytes: int = Field(375, gt=0)  # per reliable connection
    nic_processing_units: int = Field(4, ge=1)
    nic_op_occupancy_ns: float = 100.0  # a unit's time per one-sided read, state cached
    connection_miss_ns: float = 350.0  # fetch connection state over PCIe (300-400 ns)

    # --- fabric -------------------------------------------------------------------------------
    link_gbps: float = 100.0  # EDR InfiniBand
    mtu_bytes: int = 4096
    transport_header_bytes: int = 30  # LRH + BTH + AETH + ICRC + VCRC
    read_request_extra_bytes: int = 16  # RETH: remote address, key, length
    switch_hops: int = Field(1, ge=0)
    switch_latency_ns: float = 130.0
    propagation_ns_per_link: float = 10.0

    # --- host side -------------------------------------------------------------------------
    doorbell_ns: float = 150.0  # MMIO write of an inline work request
    nic_pipeline_ns: float = 150.0  # one pass through a NIC, transmit or receive
    pcie_read_ns: float = 450.0  # the target NIC's DMA read of host memory
    pcie_write_ns: float = 200.0  # a NIC's DMA write of payload + completion into host memory
    pcie_gbps: float = 128.0
    completion_poll_ns: float = 50.0  # the caller notices its completion
    rpc_detect_ns: float = 250.0  # the owner's polling thread notices a request
    rpc_dispatch_ns: float = 650.0  # RPC framework: decode, dispatch, build the response
    host_dram_ns: float = 90.0  # one dependent memory access in an RPC handler

    # --- data structures ---------------------------------------------------------------------
    item_bytes: int = Field(128, ge=32)
    slots_per_bucket: int = Field(4, ge=1)
    max_load_factor: float = Field(0.7, gt=0.0, le=1.0)

    @property
    def connection_cache_entries(self) -> int:
        return max(1, self.nic_cache_bytes // self.connection_state_bytes)

    @property
    def framing(self) -> Framing:
        return Framing(
            mtu_bytes=self.mtu_bytes + self.transport_header_bytes,
            packet_header_bytes=self.transport_header_bytes,
            frame_overhead_bytes=0,
            min_frame_bytes=0,
            ethernet_header_and_fcs_bytes=0,
        )

    def links(self) -> list[Stage]:
        return [Stage(self.link_gbps) for _ in range(self.switch_hops + 1)]

    def links_then_dma(self) -> list[Stage]:
        return [*self.links(), Stage(self.pcie_gbps, carries_frames=False)]
