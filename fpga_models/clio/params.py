"""Parameters of the Clio memory node and of the path from a client to it.

Every cost is a component cost (one DRAM access, one TLB lookup, one switch traversal, the
client library's software time, ...). End-to-end latencies are never parameters: the latency
model adds the components up, so they move when a component or the link speed changes.
Defaults describe the 10 Gbps testbed: one ToR switch between client and board.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from fpga_models.net import Framing, Stage

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


class ClioParams(BaseModel):
    """A memory board and its network, with the FPGA prototype's component numbers."""

    model_config = ConfigDict(frozen=True)

    # --- virtual memory on the board -----------------------------------------------------
    page_size: int = Field(4 * MIB, gt=0)
    physical_memory_bytes: int = Field(8 * GIB, gt=0)
    pte_slots_per_physical_page: int = Field(2, ge=1)  # the flat table has 2x slots
    bucket_entries: int = Field(16, ge=1)  # PTEs fetched together in one DRAM read
    tlb_entries: int = Field(64, ge=1)
    free_page_buffer_pages: int = Field(16, ge=0)
    va_space_bytes: int = Field(2**46, gt=0)  # per process
    max_request_bytes: int = Field(4 * MIB, gt=0)
    max_ralloc_attempts: int = Field(4096, ge=1)

    # --- board fast path (ns) -----------------------------------------------------------------
    fpga_clock_mhz: float = 250.0
    fault_from_buffer_cycles: int = 3  # take a pre-allocated page: no page-fault penalty
    board_mac_ns: float = 130.0  # 10G MAC + PCS/PMA, per direction
    board_pipeline_ns: float = 40.0  # parse + permission check
    tlb_hit_ns: float = 12.0
    page_table_walk_ns: float = 180.0  # one bucket fetch on a TLB miss
    dram_access_ns: float = 232.0
    dram_gbps: float = 115.0  # on-board read goodput
    dram_refresh_interval_ns: float = 7_800.0  # tREFI
    dram_refresh_ns: float = 350.0  # tRFC: an access that meets a refresh waits for it

    # --- client side (ns) ----------------------------------------------------------------------
    client_library_ns: float = 250.0
    nic_tx_ns: float = 280.0  # doorbell + descriptor fetch on the client NIC
    nic_rx_ns: float = 280.0  # completion write + wake-up on the client NIC
    pcie_gbps: float = 64.0  # client NIC DMA
    poll_interval_ns: float = 100.0  # the library polls its completion ring this often

    # --- network -----------------------------------------------------------------------------
    link_gbps: float = 10.0
    mtu_bytes: int = 1500
    clio_header_bytes: int = 16
    switch_hops: int = Field(1, ge=0)
    switch_latency_ns: float = 370.0  # forwarding pipeline, serialisation excluded
    propagation_ns_per_link: float = 10.0  # 2 m of cable
    background_load: float = Field(0.02, ge=0.0, lt=1.0)  # utilisation of each switch port
    background_frame_bytes: int = 640  # mean background frame on the wire

    # --- slow path: ARM cores (ns) -----------------------------------------------------------
    slow_path_rpc_ns: float = 30_000.0  # hand-off FPGA -> ARM software and back
    va_range_setup_ns: float = 2_000.0  # insert a VA range into the process's tree
    bucket_probe_ns: float = 420.0  # ARM reads one page-table bucket over AXI
    pte_install_ns: float = 690.0  # ARM writes one invalid PTE into its bucket
    slow_fault_ns: float = 30_000.0  # page fault when the free-page buffer is empty

    # --- transport ---------------------------------------------------------------------------
    request_timeout_ns: float = 20_000.0
    max_retries: int = Field(8, ge=0)
    loss_rate: float = Field(0.0, ge=0.0, lt=1.0)  # each packet, either direction
    nack_rate: float = Field(0.0, ge=0.0, lt=1.0)  # the board refuses a request (busy)

    @property
    def physical_pages(self) -> int:
        return self.physical_memory_bytes // self.page_size

    @property
    def pte_slots(self) -> int:
        return self.physical_pages * self.pte_slots_per_physical_page

    @property
    def cycle_ns(self) -> float:
        return 1_000.0 / self.fpga_clock_mhz

    @property
    def framing(self) -> Framing:
        return Framing(mtu_bytes=self.mtu_bytes, packet_header_bytes=28 + self.clio_header_bytes)

    @property
    def links(self) -> int:
        return self.switch_hops + 1

    def client_to_board(self) -> list[Stage]:
        """Stages a request crosses: client DMA, then every link store-and-forward."""
        return [Stage(self.pcie_gbps, carries_frames=False), *self._link_stages()]

    def board_to_client(self) -> list[Stage]:
        """Stages a response crosses: board DRAM read, every link, client DMA."""
        return [
            Stage(self.dram_gbps, carries_frames=False),
            *self._link_stages(),
            Stage(self.pcie_gbps, carries_frames=False),
        ]

    def _link_stages(self) -> list[Stage]:
        return [Stage(self.link_gbps) for _ in range(self.links)]

    @property
    def dedup_buffer_entries(self) -> int:
        """3 x timeout x bandwidth, counted in smallest requests."""
        smallest_request_bits = self.framing.wire_bytes(0) * 8
        requests_per_ns = self.link_gbps / smallest_request_bits
        return max(1, int(3 * self.request_timeout_ns * requests_per_ns))
