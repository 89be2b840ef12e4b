"""Every calibration figure of the hardware models, computed by running them.

`hardware_figures()` drives real operations through the Clio board (page table, TLB, memory,
latency model), the Storm dataplane and NIC cache, and the SuperNIC datapath with DRF, and
pairs each result with the value measured on the hardware the models describe.
"""

from __future__ import annotations

from fpga_models.clio.experiments import clio_figures
from fpga_models.figure import Figure
from fpga_models.storm.experiments import storm_figures
from fpga_models.supernic.experiments import supernic_figures

__all__ = ["Figure", "hardware_figures"]


def hardware_figures(seed: int = 0) -> list[Figure]:
    return clio_figures(seed) + storm_figures(seed) + supernic_figures(seed)
