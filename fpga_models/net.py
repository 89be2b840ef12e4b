"""Wire-level building blocks shared by every hardware model: framing, serialisation and queueing.

A message leaves a sender as one or more frames of at most an MTU, then crosses a series of
store-and-forward stages (a DMA engine, a link, a switch's egress link, ...). Each stage
serialises a frame at its own bandwidth and cannot forward it before the last byte is in,
so a single frame pays every stage in full while a train of frames pipelines. The Clio
board, the RDMA NIC and the SuperNIC datapath all compute their wire time here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def serialization_ns(nbytes: float, gbps: float) -> float:
    """Time to clock `nbytes` through a stage of `gbps` gigabits per second."""
    return nbytes * 8.0 / gbps


@dataclass(frozen=True, slots=True)
class Framing:
    """How a payload is cut into frames and how many bytes each frame costs on the wire."""

    mtu_bytes: int = 1500
    # Bytes inside the MTU that are not payload (IP + UDP + the protocol's own header).
    packet_header_bytes: int = 44
    # Bytes on the wire outside the MTU: preamble + SFD 8, Ethernet header 14, FCS 4, gap 12.
    frame_overhead_bytes: int = 38
    # Smallest Ethernet frame from header to FCS; shorter frames are padded.
    min_frame_bytes: int = 64
    ethernet_header_and_fcs_bytes: int = 18

    @property
    def max_payload_bytes(self) -> int:
        return self.mtu_bytes - self.packet_header_bytes

    def payload_split(self, payload_bytes: int) -> list[int]:
        """The payload carried by each frame; an empty message still sends one frame."""
        if payload_bytes <= 0:
            return [0]
        full, rest = divmod(payload_bytes, self.max_payload_bytes)
        return [self.max_payload_bytes] * full + ([rest] if rest else [])

    def wire_bytes(self, payload_bytes: int) -> int:
        """Bytes one frame occupies on the link, padding and inter-frame gap included."""
        frame = max(
            payload_bytes + self.packet_header_bytes + self.ethernet_header_and_fcs_bytes,
            self.min_frame_bytes,
        )
        return frame + self.frame_overhead_bytes - self.ethernet_header_and_fcs_bytes


@dataclass(frozen=True, slots=True)
class Stage:
    """One store-and-forward stage: a bandwidth and whether it moves whole frames or payload."""

    gbps: float
    carries_frames: bool = True  # False: a DMA or memory stage that moves only the payload


def pipelined_transfer_ns(
    payloads: Sequence[int], stages: Sequence[Stage], framing: Framing
) -> float:
    """When the last frame leaves the last stage, all frames entering the first at time 0.

    Classic store-and-forward recurrence: frame i leaves stage s at
    max(frame i leaves stage s-1, frame i-1 leaves stage s) + its serialisation at s.
    """
    done = [0.0] * len(stages)
    for payload in payloads:
        ready = 0.0
        for index, stage in enumerate(stages):
            size = framing.wire_bytes(payload) if stage.carries_frames else payload
            ready = max(ready, done[index]) + serialization_ns(size, stage.gbps)
            done[index] = ready
    return done[-1] if stages else 0.0


def message_transfer_ns(payload_bytes: int, stages: Sequence[Stage], framing: Framing) -> float:
    """Wire time of a whole message cut into frames by `framing`."""
    return pipelined_transfer_ns(framing.payload_split(payload_bytes), stages, framing)


def mm1_wait_ns(rng: np.random.Generator, load: float, service_ns: float) -> float:
    """One draw of the waiting time in an M/M/1 queue at utilisation `load`.

    With probability 1 - load the queue is empty; otherwise the wait is exponential with
    mean service / (1 - load). Used for switch ports shared with background traffic.
    """
    if load <= 0.0 or rng.random() >= load:
        return 0.0
    return float(rng.exponential(service_ns / (1.0 - load)))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation, as numpy computes it."""
    if not values:
        return math.nan
    return float(np.percentile(np.asarray(values, dtype=float), q))
