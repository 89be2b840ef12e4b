"""Prices Clio requests in simulated nanoseconds, from component costs only.

Fast path (rread/rwrite/atomics): client library + client NIC + wire time of the request and
the response through every store-and-forward stage (DMA, links at the configured bandwidth,
board DRAM) + switch forwarding + propagation + the board pipeline (MAC, parse, TLB hit or
page-table bucket fetch, fault from the free-page buffer, DRAM access). Jitter comes from
three seeded sources: M/M/1 queueing behind background traffic at each switch port, DRAM
refresh collisions, and the phase of the client's completion polling.

Slow path (ralloc/rfree): the same network round trip, plus the ARM software hand-off, the
VA-range bookkeeping and a cost per page-table bucket probed and per PTE installed.
"""

from __future__ import annotations

import numpy as np

from fpga_models.clio.fast_path import BoardWork
from fpga_models.clio.params import ClioParams
from fpga_models.net import message_transfer_ns, mm1_wait_ns, serialization_ns


class ClioLatencyModel:
    def __init__(self, params: ClioParams, seed: int = 0) -> None:
        self.params = params
        self.rng = np.random.default_rng(seed)
        self._framing = params.framing
        self._request_stages = params.client_to_board()
        self._response_stages = params.board_to_client()
        self._fixed_ns = self._fixed_path_ns()
        self._wire_cache: dict[tuple[int, int], float] = {}

    # --- deterministic parts ----------------------------------------------------------------
    def fixed_path_ns(self) -> float:
        return self._fixed_ns

    def _fixed_path_ns(self) -> float:
        """Everything on the round trip that does not depend on size or on the board's work."""
        p = self.params
        return (
            p.client_library_ns
            + p.nic_tx_ns
            + p.nic_rx_ns
            + 2 * p.board_mac_ns
            + p.board_pipeline_ns
            + 2 * p.links * p.propagation_ns_per_link
            + 2 * p.switch_hops * p.switch_latency_ns
        )

    def wire_ns(self, request_payload: int, response_payload: int) -> float:
        """Store-and-forward time of request and response (memoised: it is deterministic)."""
        key = (request_payload, response_payload)
        cached = self._wire_cache.get(key)
        if cached is None:
            cached = message_transfer_ns(
                request_payload, self._request_stages, self._framing
            ) + message_transfer_ns(response_payload, self._response_stages, self._framing)
            if len(self._wire_cache) < 4096:
                self._wire_cache[key] = cached
        return cached

    def board_ns(self, work: BoardWork) -> float:
        """Translation, faults and the DRAM access (streaming is a stage of the response)."""
        p = self.params
        return (
            work.translations * p.tlb_hit_ns
            + work.tlb_misses * p.page_table_walk_ns
            + work.buffered_faults * p.fault_from_buffer_cycles * p.cycle_ns
            + work.slow_faults * p.slow_fault_ns
            + (p.dram_access_ns if work.dram_bytes else 0.0)
        )

    # --- seeded jitter ----------------------------------------------------------------------
    def queueing_ns(self) -> float:
        """Waiting behind background frames at every switch egress port, both directions."""
        p = self.params
        service = serialization_ns(p.background_frame_bytes, p.link_gbps)
        return sum(
            mm1_wait_ns(self.rng, p.background_load, service) for _ in range(2 * p.switch_hops)
        )

    def refresh_stall_ns(self) -> float:
        """An access arriving during a DRAM refresh waits for the rest of it."""
        p = self.params
        phase = self.rng.random() * p.dram_refresh_interval_ns
        return max(0.0, p.dram_refresh_ns - phase)

    def poll_phase_ns(self) -> float:
        return float(self.rng.random() * self.params.poll_interval_ns)

    # --- whole requests ---------------------------------------------------------------------
    def data_request_ns(
        self, request_payload: int, response_payload: int, work: BoardWork
    ) -> float:
        """End-to-end latency of one rread/rwrite/atomic as the client sees it."""
        stall = self.refresh_stall_ns() if work.dram_bytes else 0.0
        return (
            self.fixed_path_ns()
            + self.wire_ns(request_payload, response_payload)
            + self.board_ns(work)
            + stall
            + self.queueing_ns()
            + self.poll_phase_ns()
        )

    def slow_path_ns(self, buckets_probed: int, ptes_touched: int, new_range: bool) -> float:
        """ralloc (new_range) or rfree: a round trip to the board's ARM cores."""
        p = self.params
        return (
            self.fixed_path_ns()
            + self.wire_ns(0, 0)
            + p.slow_path_rpc_ns
            + (p.va_range_setup_ns if new_range else 0.0)
            + buckets_probed * p.bucket_probe_ns
            + ptes_touched * p.pte_install_ns
            + self.queueing_ns()
            + self.poll_phase_ns()
        )

    def issue_ns(self) -> float:
        """What an async request costs the caller before it can go on."""
        return self.params.client_library_ns
