"""SuperNIC calibration experiments: one packet's trip through an idle datapath, the extra
cost of a redirect to a peer sNIC, and fairness among backlogged tenants under DRF."""

from __future__ import annotations

from fpga_models.figure import Figure
from fpga_models.supernic.drf import jain_index
from fpga_models.supernic.params import SuperNICParams
from fpga_models.supernic.switch import SuperNIC
from fpga_models.supernic.traffic import TenantLoad, TrafficReport, TrafficRun

IDLE_GAP_NS = 1_000_000.0  # packets far apart: nothing queues


def datapath_latency_ns(payload_bytes: int = 64, chain: tuple[str, ...] = ("checksum",)) -> float:
    snic = SuperNIC()
    return snic.transmit("probe", bytes(payload_bytes), chain, at_ns=IDLE_GAP_NS).latency_ns


def redirect_extra_ns(payload_bytes: int = 64) -> float:
    """A chain the first sNIC has no instance for goes to a peer that has one."""
    direct = SuperNIC(name="peer").transmit("probe", bytes(payload_bytes), ("compress",), at_ns=0)
    peer = SuperNIC(name="peer")
    local = SuperNIC(SuperNICParams(instances={"checksum": 1}), name="local", peers=[peer])
    redirected = local.transmit("probe", bytes(payload_bytes), ("compress",), at_ns=0)
    return redirected.latency_ns - direct.latency_ns


def backlogged_tenants(epochs: int = 30, seed: int = 0) -> TrafficReport:
    """Three tenants, each offering more than its fair share, with different NT chains."""
    loads = [
        TenantLoad("compressing", 60.0, ("compress",)),
        TenantLoad("replicating", 80.0, ("checksum", "replicate")),
        TenantLoad("checksumming", 90.0, ("checksum",)),
    ]
    return TrafficRun(SuperNIC(), loads, seed=seed).run(epochs)


def supernic_figures(seed: int = 0) -> list[Figure]:
    report = backlogged_tenants(seed=seed)
    fairness = jain_index(list(report.dominant_shares.values()))
    return [
        Figure("supernic datapath, 64 B, checksum NT", datapath_latency_ns() / 1e3, 1.3, "us"),
        Figure("supernic redirect to a peer, extra", redirect_extra_ns() / 1e3, 1.3, "us"),
        Figure("supernic Jain index of dominant shares, DRF", fairness, 1.0, ""),
    ]
