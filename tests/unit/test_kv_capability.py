"""KV capabilities: minted under the deployment's secret, checked for signature, expiry and
tenant, without Ray."""

from __future__ import annotations

import pytest

from cluster.kv_capability import (
    SECRET_ENV,
    CapabilityAuthority,
    CapabilityError,
    deployment_secret,
)

SECRET = b"sixteen or more bytes of secret"
NOW = 1_000_000.0


def test_a_minted_capability_grants_its_tenant_until_it_expires() -> None:
    authority = CapabilityAuthority(SECRET)
    token = authority.mint(42, ttl_s=60.0, now=NOW)
    granted = authority.check(token, 42, now=NOW + 59.0)
    assert (granted.tenant, granted.expires_at) == ("42", NOW + 60.0)
    assert authority.check(token, "42", now=NOW).tenant == "42"  # named tenants alike
    with pytest.raises(CapabilityError, match="expired"):
        authority.check(token, 42, now=NOW + 60.0)


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("", "no KV capability"),
        ("v1.42", "malformed"),
        ("v2.42.9999999999999.00", "malformed"),
        ("v1.42.soon.00", "malformed"),
    ],
)
def test_malformed_or_missing_capabilities_are_refused(token: str, says: str) -> None:
    with pytest.raises(CapabilityError, match=says):
        CapabilityAuthority(SECRET).check(token, 42, now=NOW)


def test_another_secret_another_tenant_or_a_changed_field_is_refused() -> None:
    authority = CapabilityAuthority(SECRET)
    token = authority.mint(42, now=NOW)
    with pytest.raises(CapabilityError, match="signature"):
        CapabilityAuthority(b"another deployment's secret").check(token, 42, now=NOW)
    with pytest.raises(CapabilityError, match="another tenant"):
        authority.check(token, 43, now=NOW)
    version, tenant, expiry, mac = token.split(".")
    for changed in (f"{version}.43.{expiry}.{mac}", f"{version}.{tenant}.{expiry}9.{mac}"):
        with pytest.raises(CapabilityError, match="signature"):
            authority.check(changed, 43 if ".43." in changed else 42, now=NOW)


def test_any_of_several_presented_capabilities_may_grant() -> None:
    authority = CapabilityAuthority(SECRET)
    tokens = [authority.mint(1), authority.mint(2)]
    assert authority.check_any(tokens, 2).tenant == "2"
    with pytest.raises(CapabilityError, match="another tenant"):
        authority.check_any(tokens, 3)
    with pytest.raises(CapabilityError, match="no KV capability"):
        authority.check_any([], 1)


def test_the_secret_comes_from_the_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    assert deployment_secret() != deployment_secret()  # fresh for each deployment
    monkeypatch.setenv(SECRET_ENV, "ab" * 32)
    assert deployment_secret() == bytes.fromhex("ab" * 32)
    with pytest.raises(ValueError, match="16 bytes"):
        CapabilityAuthority(b"short")
