"""The owner side of Storm's remote hash table: one contiguous registered region of real bytes.

Layout: `buckets` buckets, each an 8-byte overflow pointer followed by `slots_per_bucket`
inline items, then an overflow area of chained items. An item is key (u64, 0 = empty),
version word (u64, bit 0 = locked, bumped by 2 on every committed write), next pointer (u64,
overflow chains only) and a fixed-size value. Remote clients read this region with one-sided
reads; only the owner mutates it, in its RPC handlers (lock, commit, unlock). The table
refuses inserts past its load factor, keeping most keys in their home bucket.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from fpga_models.hashing import mix64
from fpga_models.storm.params import StormParams

ITEM_HEADER = struct.Struct("<QQQ")  # key, version word, next overflow item
OVERFLOW_POINTER = struct.Struct("<Q")
LOCK_BIT = 1


class TableFull(RuntimeError):
    """Inserting would push the table past its load factor (or its overflow area)."""


def key_hash(key: int, salt: int) -> int:
    """Independent hashes of one key: salt 1 picks the bucket, salt 2 the owner node."""
    return mix64(mix64(key) ^ salt)


def owner_node(key: int, nodes: int) -> int:
    """The node whose region holds `key`."""
    return key_hash(key, 2) % nodes


@dataclass(frozen=True, slots=True)
class Item:
    key: int
    version: int
    locked: bool
    value: bytes
    address: int


class HashTableRegion:
    def __init__(self, params: StormParams, buckets: int, overflow_items: int) -> None:
        self.params = params
        self.buckets = buckets
        self.item_bytes = params.item_bytes
        self.value_bytes = params.item_bytes - ITEM_HEADER.size
        self.bucket_bytes = OVERFLOW_POINTER.size + params.slots_per_bucket * params.item_bytes
        self.overflow_base = buckets * self.bucket_bytes
        self.region = bytearray(self.overflow_base + overflow_items * params.item_bytes)
        self.items = 0
        self._overflow_used = 0

    # --- what remote readers see ---------------------------------------------------------------
    def bucket_address(self, key: int) -> int:
        return (key_hash(key, 1) % self.buckets) * self.bucket_bytes

    def read(self, address: int, nbytes: int) -> bytes:
        """A one-sided read: raw bytes, no CPU involved."""
        return bytes(self.region[address : address + nbytes])

    def decode_item(self, raw: bytes | memoryview, address: int) -> Item | None:
        key, word, _ = ITEM_HEADER.unpack_from(raw, 0)
        if key == 0:
            return None
        value = bytes(raw[ITEM_HEADER.size : self.item_bytes])
        return Item(key, word & ~LOCK_BIT, bool(word & LOCK_BIT), value, address)

    def slot_addresses(self, bucket_address: int) -> list[int]:
        first = bucket_address + OVERFLOW_POINTER.size
        return [first + slot * self.item_bytes for slot in range(self.params.slots_per_bucket)]

    # --- owner-side operations (run inside RPC handlers) --------------------------------------
    def locate(self, key: int) -> tuple[Item | None, int]:
        """Walk home bucket then overflow chain; returns the item and dependent accesses made."""
        bucket = self.bucket_address(key)
        accesses = 1
        for address in self.slot_addresses(bucket):
            item = self._item_at(address)
            if item is not None and item.key == key:
                return item, accesses
        (address,) = OVERFLOW_POINTER.unpack_from(self.region, bucket)
        while address:
            accesses += 1
            item = self._item_at(address)
            if item is not None and item.key == key:
                return item, accesses
            address = ITEM_HEADER.unpack_from(self.region, address)[2]
        return None, accesses

    def insert(self, key: int, value: bytes) -> int:
        if key == 0:
            raise ValueError("key 0 marks an empty slot")
        capacity = self.buckets * self.params.slots_per_bucket
        if self.items + 1 > self.params.max_load_factor * capacity:
            raise TableFull(f"{self.items + 1} items exceed the load factor of {capacity} slots")
        bucket = self.bucket_address(key)
        for address in self.slot_addresses(bucket):
            if self._item_at(address) is None:
                return self._store(address, key, 0, 0, value)
        address = self.overflow_base + self._overflow_used * self.item_bytes
        if address + self.item_bytes > len(self.region):
            raise TableFull("overflow area exhausted")
        self._overflow_used += 1
        (head,) = OVERFLOW_POINTER.unpack_from(self.region, bucket)
        OVERFLOW_POINTER.pack_into(self.region, bucket, address)
        return self._store(address, key, 0, head, value)

    def try_lock(self, key: int, expected_version: int | None) -> tuple[bool, int]:
        """Lock for a commit: fails if absent, already locked, or changed since it was read."""
        item, accesses = self.locate(key)
        if item is None or item.locked:
            return False, accesses
        if expected_version is not None and item.version != expected_version:
            return False, accesses
        self._set_word(item.address, item.version | LOCK_BIT)
        return True, accesses

    def commit(self, key: int, value: bytes) -> int:
        """Write a locked item's new value, bump its version and unlock it."""
        item, accesses = self.locate(key)
        if item is None or not item.locked:
            raise RuntimeError(f"commit of key {key} that this transaction does not hold")
        next_pointer = ITEM_HEADER.unpack_from(self.region, item.address)[2]
        self._store(item.address, key, item.version + 2, next_pointer, value, count=False)
        return accesses

    def unlock(self, key: int) -> int:
        item, accesses = self.locate(key)
        if item is not None:
            self._set_word(item.address, item.version)
        return accesses

    def _item_at(self, address: int) -> Item | None:
        return self.decode_item(
            memoryview(self.region)[address : address + self.item_bytes], address
        )

    def _set_word(self, address: int, word: int) -> None:
        struct.pack_into("<Q", self.region, address + 8, word)

    def _store(
        self, address: int, key: int, word: int, next_pointer: int, value: bytes, count: bool = True
    ) -> int:
        if len(value) > self.value_bytes:
            raise ValueError(f"value of {len(value)} bytes exceeds {self.value_bytes}")
        ITEM_HEADER.pack_into(self.region, address, key, word, next_pointer)
        end = address + self.item_bytes
        self.region[address + ITEM_HEADER.size : end] = value.ljust(self.value_bytes, b"\0")
        self.items += count
        return address
