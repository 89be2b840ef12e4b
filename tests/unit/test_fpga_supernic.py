"""SuperNIC: NTs on real bytes, credits, token buckets, DRF, auto-scaling and shared throughput."""

from __future__ import annotations

import itertools
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fpga_models.supernic.autoscale import Autoscaler
from fpga_models.supernic.drf import drf_allocate, drf_tasks, jain_index
from fpga_models.supernic.params import SuperNICParams, TaskSpec
from fpga_models.supernic.parser import TenantParser
from fpga_models.supernic.scheduler import CreditScheduler, TaskInstance
from fpga_models.supernic.switch import Dropped, SuperNIC
from fpga_models.supernic.tasks import ChecksumMismatch, ChecksumTask
from fpga_models.supernic.traffic import TenantLoad, TrafficRun


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=20_000), st.integers(1, 40))
def test_compression_round_trips_real_bytes(payload: bytes, repeat: int) -> None:
    data = payload * repeat
    snic = SuperNIC()
    sent = snic.transmit("kv", data, ("checksum", "compress"))
    assert sent.meta["compression_ratio"] == pytest.approx(len(data) / max(1, len(sent.payload)))
    back = snic.transmit("kv", sent.payload, ("decompress", "verify"), meta=sent.meta)
    assert back.payload == data
    assert back.meta["crc32"] == zlib.crc32(data) and back.meta["crc_ok"] is True


def test_verify_detects_corruption_and_replicate_copies() -> None:
    snic = SuperNIC()
    sent = snic.transmit("kv", b"page bytes", ("checksum", "replicate"))
    assert sent.replicas == (b"page bytes",)
    with pytest.raises(ChecksumMismatch):
        snic.transmit("kv", b"page bytez", ("verify",), meta=sent.meta)


def test_counters_and_installed_chain() -> None:
    snic = SuperNIC()
    snic.install_chain("a", ("checksum", "replicate"))
    sent = snic.transmit("a", bytes(1000))
    assert "crc32" in sent.meta and len(sent.replicas) == 1
    counters = snic.counters["a"]
    assert counters.ingress_bytes == 1000 and counters.egress_wire_bytes > 2000
    assert counters.task_bytes == {"checksum": 1000, "replicate": 1000}


def test_redirect_goes_to_a_peer_that_runs_the_chain() -> None:
    peer = SuperNIC(name="peer")
    local = SuperNIC(SuperNICParams(instances={"checksum": 1}), name="local", peers=[peer])
    sent = local.transmit("a", bytes(64), ("compress",), at_ns=0)
    assert sent.redirected_to == "peer"
    assert sent.latency_ns > 2 * local.params.mac_phy_ns * 2
    with pytest.raises(LookupError):
        SuperNIC(SuperNICParams(instances={})).transmit("a", b"x", ("compress",))


def test_credits_cap_packets_in_flight_per_nt() -> None:
    scheduler = CreditScheduler(credits_per_task=8)
    slow = TaskInstance("compress", ChecksumTask(), TaskSpec(throughput_gbps=1.0, pipeline_ns=0))
    scheduler.add_instance(slow)
    starts = []
    for _ in range(20):
        start, (instance,) = scheduler.reserve(("compress",), 0.0)
        scheduler.hold(instance, instance.serve(start, 1000))
        starts.append(start)
    assert starts[:8] == [0.0] * 8
    assert all(later > 0 for later in starts[8:])
    assert scheduler.stats.credit_waits == 12
    for index in range(8, 20):  # the n-th packet waits for the (n-8)-th to leave
        assert starts[index] == pytest.approx((index - 7) * 8000.0)


def test_token_bucket_admits_at_its_rate_and_drops_beyond_the_queue() -> None:
    parser = TenantParser(port_gbps=100.0, queue_limit_ns=10_000.0)
    parser.set_rate("t", 8.0, 0.0)  # 1 byte per ns
    admitted = [parser.admit("t", 1000, float(i)) for i in range(40)]
    kept = [at for at in admitted if at is not None]
    assert parser.drops["t"] == 40 - len(kept)
    assert all(b - a == pytest.approx(1000.0) for a, b in itertools.pairwise(kept[10:]))
    snic = SuperNIC(SuperNICParams(ingress_queue_ns=0.0))
    snic.parser.set_rate("t", 0.001, 0.0)
    snic.transmit("t", bytes(9000), at_ns=0.0)  # the burst covers one jumbo frame
    with pytest.raises(Dropped):
        snic.transmit("t", bytes(9000), at_ns=0.0)


def test_drf_classic_example() -> None:
    capacity = {"cpu": 9.0, "mem": 18.0}
    demand = {"A": {"cpu": 1.0, "mem": 4.0}, "B": {"cpu": 3.0, "mem": 1.0}}
    assert drf_tasks(capacity, demand) == {"A": 3, "B": 2}
    shares = drf_allocate(capacity, demand)
    assert shares["A"] == pytest.approx(3.0) and shares["B"] == pytest.approx(2.0)


def test_drf_respects_demand_caps_and_gives_the_rest_away() -> None:
    capacity = {"cpu": 9.0, "mem": 18.0}
    demand = {"A": {"cpu": 1.0, "mem": 4.0}, "B": {"cpu": 3.0, "mem": 1.0}}
    shares = drf_allocate(capacity, demand, caps={"A": 1.0})
    assert shares["A"] == pytest.approx(1.0) and shares["B"] == pytest.approx(8.0 / 3.0)
    assert jain_index([1.0, 1.0, 1.0]) == 1.0
    assert jain_index([1.0, 0.0, 0.0]) == pytest.approx(1 / 3)


def test_autoscaler_adds_an_instance_after_sustained_overload() -> None:
    scaler = Autoscaler(overload_window_ns=10e6, region_load_ns=5e6)
    ready_at = None
    for epoch in range(1_000):
        now = epoch * 20_000.0
        if scaler.observe("compress", 1.5, now):
            ready_at = now
            break
    assert scaler.history[0].decided_ns == pytest.approx(10e6)
    assert ready_at == pytest.approx(15e6)
    assert scaler.instances["compress"] == 2
    interrupted = Autoscaler(overload_window_ns=10e6, region_load_ns=5e6)
    for epoch in range(1_000):  # overload broken every 5 ms never triggers
        interrupted.observe("compress", 0.5 if epoch % 250 == 0 else 1.5, epoch * 20_000.0)
    assert interrupted.history == []


def test_two_tenants_get_their_drf_shares_of_throughput() -> None:
    loads = [
        TenantLoad("compressing", 80.0, ("compress",)),
        TenantLoad("replicating", 80.0, ("checksum", "replicate")),
    ]
    report = TrafficRun(SuperNIC(), loads, seed=1).run(epochs=30)
    for tenant in ("compressing", "replicating"):
        allocated, delivered = report.allocated_gbps[tenant], report.delivered_gbps[tenant]
        assert abs(delivered - allocated) / allocated < 0.10
    assert sum(report.allocated_gbps.values()) < 160.0  # both were throttled
    assert jain_index(list(report.dominant_shares.values())) > 0.99


def test_overloaded_nt_scales_out_in_the_traffic_loop() -> None:
    params = SuperNICParams(overload_window_ns=100_000.0, region_load_ns=60_000.0)
    run = TrafficRun(SuperNIC(params), [TenantLoad("big", 60.0, ("compress",))])
    report = run.run(epochs=20, warmup_epochs=14)
    assert [event.task for event in report.scale_events] == ["compress"]
    assert len(run.snic.scheduler.instances["compress"]) == 2
    assert report.delivered_gbps["big"] == pytest.approx(60.0, rel=0.1)


@pytest.mark.parametrize("nbytes", [0, 1, 1456, 1457, 65_536, 786_448, 2 * 1024 * 1024 + 16])
def test_price_is_what_plain_switching_charges_an_idle_datapath(nbytes: int) -> None:
    charged = SuperNIC().transmit("t", bytes(nbytes), chain=()).latency_ns
    priced = SuperNIC()
    assert priced.price("t", nbytes) == pytest.approx(charged, rel=1e-12)
    assert priced.counters["t"].ingress_bytes == nbytes
