"""Faults injected on the KV path (actors/kv/fault_injection.py): the calls the environment
names are dropped or delayed before they leave the process, and a dropped lease release is
sent again."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from actors.kv import fault_injection
from actors.kv.fault_injection import FAULTS_ENV, KVFaults
from actors.kv.kv_client import KVClient, KVTransferError
from tetriserve.v1 import kv_pb2, kv_pb2_grpc


class FakeMemoryNode(kv_pb2_grpc.MemoryNodeServicer):
    """Answers Fence and ReleaseLease, and counts the calls that reached it."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def Fence(self, request, context):
        self.calls["Fence"] += 1
        return kv_pb2.FenceReply(latency_ns=7)

    def ReleaseLease(self, request, context):
        self.calls["ReleaseLease"] += 1
        return kv_pb2.ReleaseLeaseReply(pages_freed=2)


@pytest.fixture
def node() -> Iterator[tuple[FakeMemoryNode, str]]:
    servicer = FakeMemoryNode()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    kv_pb2_grpc.add_MemoryNodeServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(grace=None)


def _client(monkeypatch: pytest.MonkeyPatch, address: str, faults: KVFaults) -> KVClient:
    monkeypatch.setenv(FAULTS_ENV, faults.model_dump_json())
    return KVClient(address, timeout_s=5.0)


def test_every_nth_call_of_a_named_method_is_dropped_before_it_leaves(node, monkeypatch) -> None:
    servicer, address = node
    with _client(monkeypatch, address, KVFaults(drop_every=2, methods=("Fence",))) as client:
        assert client.fence(tenant=1) == 7
        with pytest.raises(KVTransferError) as dropped:
            client.fence(tenant=1)
        assert dropped.value.code == "UNAVAILABLE"
        assert client.fence(tenant=1) == 7
    assert servicer.calls == Counter({"Fence": 2})


def test_a_dropped_lease_release_is_sent_again(node, monkeypatch) -> None:
    servicer, address = node
    with _client(monkeypatch, address, KVFaults(drop_every=2)) as client:
        assert [client.release_lease("lease", tenant=1) for _ in range(3)] == [2, 2, 2]
    assert servicer.calls == Counter({"ReleaseLease": 3})  # calls 2 and 4 were dropped


def test_a_release_dropped_every_time_fails_after_its_attempts(node, monkeypatch) -> None:
    servicer, address = node
    monkeypatch.setattr("actors.kv.kv_client.RELEASE_BACKOFF_S", 0.0)
    client = _client(monkeypatch, address, KVFaults(drop_every=1))
    with client, pytest.raises(KVTransferError, match="dropped by fault injection"):
        client.release_lease("lease", tenant=1)
    assert servicer.calls == Counter()


def test_named_calls_wait_the_delay_and_others_do_not(node, monkeypatch) -> None:
    _, address = node
    waited: list[float] = []
    monkeypatch.setattr(fault_injection.time, "sleep", waited.append)
    faults = KVFaults(delay_ms=20, methods=("ReleaseLease",))
    with _client(monkeypatch, address, faults) as client:
        client.fence(tenant=1)
        client.release_lease("lease", tenant=1)
    assert waited == [0.02]


def test_without_the_variable_nothing_is_injected(node, monkeypatch) -> None:
    servicer, address = node
    monkeypatch.delenv(FAULTS_ENV, raising=False)
    with KVClient(address) as client:
        assert [client.fence(tenant=1) for _ in range(4)] == [7] * 4
    assert servicer.calls == Counter({"Fence": 4})
