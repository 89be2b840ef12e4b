from cluster.kv_transfer import LEASE_MARGIN_S, lease_usable, lease_worth_keeping


def test_a_lease_with_half_its_life_left_is_kept_and_one_with_less_replaced() -> None:
    assert lease_worth_keeping(expires_at_unix_s=115.0, now_unix_s=100.0, ttl_s=30.0)
    assert not lease_worth_keeping(expires_at_unix_s=114.0, now_unix_s=100.0, ttl_s=30.0)
    # short leases: at least the margin a lease needs to be written at all
    assert not lease_worth_keeping(100.0 + LEASE_MARGIN_S - 1, now_unix_s=100.0, ttl_s=8.0)


def test_leases_too_short_ever_to_be_usable_are_not_taken_again() -> None:
    ttl_s = LEASE_MARGIN_S / 2
    assert not lease_usable(expires_at_unix_s=100.0 + ttl_s, now_unix_s=100.0)  # even fresh
    assert lease_worth_keeping(expires_at_unix_s=100.0, now_unix_s=100.0, ttl_s=ttl_s)
