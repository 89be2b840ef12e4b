"""Round-trip times of Storm's two primitives, summed from component costs.

One-sided read: doorbell, four NIC pipeline passes (caller TX, target RX, target TX, caller
RX), switch and cable both ways, the target NIC's DMA read of host memory, the caller NIC's
DMA write of data and completion, and the caller noticing the completion; no CPU on the
target. RPC: the same fabric path, but the request is DMA-written into the owner's memory,
the owner's polling thread notices it, the framework dispatches it, the handler makes its
dependent memory accesses, and the owner posts the response with its own doorbell.
Connection-state misses in either NIC add their PCIe fetch.
"""

from __future__ import annotations

from fpga_models.net import message_transfer_ns
from fpga_models.storm.params import StormParams


class StormLatency:
    def __init__(self, params: StormParams) -> None:
        self.params = params

    def _fabric_ns(self, request_bytes: int, response_bytes: int) -> float:
        p = self.params
        wire = message_transfer_ns(request_bytes, p.links(), p.framing) + message_transfer_ns(
            response_bytes, p.links_then_dma(), p.framing
        )
        hops = 2 * (
            p.switch_hops * p.switch_latency_ns + (p.switch_hops + 1) * p.propagation_ns_per_link
        )
        return (
            p.doorbell_ns
            + 4 * p.nic_pipeline_ns
            + hops
            + wire
            + p.pcie_write_ns
            + p.completion_poll_ns
        )

    def read_ns(self, nbytes: int, connection_miss_ns: float = 0.0) -> float:
        """A one-sided read of `nbytes` of the target's registered memory."""
        p = self.params
        return (
            self._fabric_ns(p.read_request_extra_bytes, nbytes)
            + p.pcie_read_ns
            + connection_miss_ns
        )

    def rpc_ns(
        self,
        request_bytes: int,
        response_bytes: int,
        handler_accesses: int,
        connection_miss_ns: float = 0.0,
    ) -> float:
        """A request/response RPC whose handler makes `handler_accesses` dependent accesses."""
        p = self.params
        return (
            self._fabric_ns(request_bytes, response_bytes)
            + p.pcie_write_ns  # the request lands in the owner's receive buffer
            + p.rpc_detect_ns
            + p.rpc_dispatch_ns
            + handler_accesses * p.host_dram_ns
            + p.doorbell_ns  # the owner posts its response
            + connection_miss_ns
        )
