"""Network tasks (NTs): what runs in an sNIC's reconfigurable regions, on real bytes.

checksum   records the CRC-32 of the payload in the packet's metadata
verify     recomputes it and raises `ChecksumMismatch` when the payload was corrupted
compress   zstd-compresses the payload and records the ratio
decompress restores a payload compressed by `compress`
replicate  emits a copy of the packet to a second destination
Each task turns one packet into one or more packets; the switch prices the time from the task's
`TaskSpec` (throughput, pipeline latency), never from the host's wall clock.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import zstandard

PRIMARY = "primary"
REPLICA = "replica"


class ChecksumMismatch(ValueError):
    """A payload no longer matches the checksum recorded when it entered the network."""


@dataclass(slots=True)
class Packet:
    tenant: str
    payload: bytes
    destination: str = PRIMARY
    meta: dict[str, object] = field(default_factory=dict)


class NetworkTask(Protocol):
    name: str

    def process(self, packet: Packet) -> list[Packet]: ...


class ChecksumTask:
    name = "checksum"

    def process(self, packet: Packet) -> list[Packet]:
        packet.meta["crc32"] = zlib.crc32(packet.payload)
        return [packet]


class VerifyTask:
    name = "verify"

    def process(self, packet: Packet) -> list[Packet]:
        expected = packet.meta.get("crc32")
        if expected is None:
            raise ChecksumMismatch("packet carries no checksum to verify")
        if zlib.crc32(packet.payload) != expected:
            raise ChecksumMismatch(f"crc32 {zlib.crc32(packet.payload):#010x} != {expected:#010x}")
        packet.meta["crc_ok"] = True
        return [packet]


class CompressTask:
    name = "compress"

    def __init__(self, level: int = 1) -> None:
        self._compressor = zstandard.ZstdCompressor(level=level)

    def process(self, packet: Packet) -> list[Packet]:
        original = len(packet.payload)
        packet.payload = self._compressor.compress(packet.payload)
        packet.meta["compression_ratio"] = original / max(1, len(packet.payload))
        return [packet]


class DecompressTask:
    name = "decompress"

    def __init__(self) -> None:
        self._decompressor = zstandard.ZstdDecompressor()

    def process(self, packet: Packet) -> list[Packet]:
        packet.payload = self._decompressor.decompress(packet.payload)
        return [packet]


class ReplicateTask:
    name = "replicate"

    def process(self, packet: Packet) -> list[Packet]:
        copy = replace(packet, destination=REPLICA, meta=dict(packet.meta))
        return [packet, copy]


def task_factories(compression_level: int) -> dict[str, Callable[[], NetworkTask]]:
    """Builders for every NT type the sNIC can load into a region."""
    return {
        "checksum": ChecksumTask,
        "verify": VerifyTask,
        "compress": lambda: CompressTask(compression_level),
        "decompress": DecompressTask,
        "replicate": ReplicateTask,
    }
