"""The switch's fair share on a fake clock: DRF per epoch from metered usage, then rates."""

from __future__ import annotations

import pytest

from fpga_models.supernic.fair_share import (
    FairShare,
    FairShareConfig,
    RateLimiter,
    switch_capacities,
)
from fpga_models.supernic.params import SuperNICParams
from tests.support import FakeClock

MB = 1e6
SCALE = 4 * MB / (100e9 / 8)  # 4 MB/s of ingress, 1.6 MB/s of compression


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fair(clock: FakeClock) -> FairShare:
    return FairShare(SuperNICParams(), FairShareConfig(scale=SCALE, window_epochs=4), clock)


def send(fair: FairShare, tenant: str, nbytes: float, compressed: float | None, waited: float):
    """One epoch's worth of a tenant's traffic, as the switch meters it."""
    tasks = {"checksum": nbytes, "verify": nbytes}
    if compressed is not None:
        tasks.update(compress=nbytes, decompress=compressed)
    egress = compressed if compressed is not None else nbytes
    fair.record(tenant, ingress=int(nbytes), egress=int(egress), tasks=tasks, waited_s=waited)


def test_capacities_are_the_snics_scaled() -> None:
    capacity = switch_capacities(SuperNICParams(), SCALE)
    assert capacity["ingress"] == pytest.approx(4 * MB)
    assert capacity["nt:compress"] == pytest.approx(1.6 * MB)


def test_backlogged_tenants_split_by_their_dominant_resources(fair: FairShare, clock: FakeClock):
    send(fair, "zip", 0.3 * MB, compressed=0.27 * MB, waited=0.01)
    send(fair, "raw", 0.3 * MB, compressed=None, waited=0.01)
    clock.now = 0.05
    fair.tick()
    report = fair.report()
    rates = {t: u["allocated_bytes_per_s"] for t, u in report["tenants"].items()}
    # zip's dominant resource is the compression NT (1.6 MB/s), raw's the 4 MB/s port:
    # equal dominant shares s give zip 1.6 s and raw 4 s, and the port fills at s = 4 / 5.6.
    assert rates["zip"] == pytest.approx(1.6 * MB / 1.4)
    assert rates["raw"] == pytest.approx(4 * MB / 1.4)
    assert report["jain_index"] == pytest.approx(1.0)
    assert fair.limiter.rates == rates
    clock.now = 0.1
    fair.tick()
    assert fair.report()["tenants"]["zip"]["granted_bytes"] == pytest.approx(rates["zip"] * 0.05)


def test_a_tenant_that_did_not_wait_is_capped_but_may_grow(fair: FairShare, clock: FakeClock):
    send(fair, "quiet", 0.01 * MB, compressed=None, waited=0.0)  # 0.2 MB/s
    send(fair, "busy", 0.3 * MB, compressed=None, waited=0.01)
    clock.now = 0.05
    fair.tick()
    tenants = fair.report()["tenants"]
    assert tenants["quiet"]["allocated_bytes_per_s"] == pytest.approx(0.25 * MB)
    assert tenants["busy"]["allocated_bytes_per_s"] == pytest.approx(3.75 * MB)
    assert fair.limiter.rates["quiet"] == pytest.approx(2 * MB)  # its uncapped fair share
    assert fair.limiter.rates["busy"] == pytest.approx(3.75 * MB)


def test_a_tenant_silent_for_the_whole_window_loses_its_limit(fair: FairShare, clock: FakeClock):
    send(fair, "gone", 0.3 * MB, compressed=None, waited=0.01)
    for epoch in range(1, 5):
        clock.now = 0.06 * epoch
        fair.tick()
        assert fair.limiter.rates["gone"] == pytest.approx(4 * MB)
    clock.now = 0.3
    fair.tick()
    assert fair.limiter.rates["gone"] is None


def test_a_new_rate_keeps_what_waiting_calls_owe() -> None:
    limiter = RateLimiter(None, burst_s=0.05)
    limiter.set_rate("t", 1 * MB)
    assert limiter.reserve("t", 50_000) == 0.0  # the burst
    assert limiter.reserve("t", 100_000) == pytest.approx(0.1, rel=0.05)
    limiter.set_rate("t", 2 * MB)  # the 100 kB still owed are paid at the new rate
    assert limiter.reserve("t", 10_000) == pytest.approx(0.055, rel=0.1)
    limiter.set_rate("t", None)
    assert limiter.reserve("t", 10**9) == 0.0
