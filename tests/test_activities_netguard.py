"""The outbound address guard: which addresses are refused, and the resolver that enforces it."""

from __future__ import annotations

import socket
from ipaddress import ip_address

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from temporalio.exceptions import ApplicationError

from activities.netguard import (
    AddressGuard,
    GuardedResolver,
    literal_address,
    parse_networks,
    refusal_reason,
)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.5.4", "private"),
        ("192.168.0.10", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fd12:3456::1", "private"),
        ("fe80::1", "link-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:a9fe:a9fe::", "link-local"),  # 6to4 of 169.254.169.254
    ],
)
def test_internal_addresses_are_refused_with_a_reason(address: str, reason: str) -> None:
    assert refusal_reason(ip_address(address)) == reason
    assert not AddressGuard().is_allowed(ip_address(address))


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "93.184.216.34", "2606:4700::1111", "::ffff:1.1.1.1"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal_reason(ip_address(address)) is None
    assert AddressGuard().is_allowed(ip_address(address))


def test_allowed_networks_open_internal_ranges_including_mapped_forms() -> None:
    guard = AddressGuard(parse_networks(["127.0.0.0/8, 10.0.0.0/8", "fd00::/8"]))
    for address in ("127.0.0.1", "10.9.9.9", "::ffff:127.0.0.1", "fd00::5"):
        assert guard.is_allowed(ip_address(address)), address
    for address in ("192.168.1.1", "::1", "169.254.169.254"):
        assert not guard.is_allowed(ip_address(address)), address


def test_parse_networks_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_networks(["10.0.0.0/8,not-a-network"])


def test_refusal_names_host_address_and_how_to_allow_it() -> None:
    with pytest.raises(ApplicationError) as caught:
        AddressGuard().check("db.internal", ip_address("10.0.0.7"))
    error = caught.value
    assert error.type == "AddressNotAllowed"
    assert error.non_retryable
    assert "db.internal" in error.message and "10.0.0.7" in error.message
    assert "--allow-network 10.0.0.7/32" in error.message
    assert "DAGFLOW_ALLOWED_NETWORKS" in error.message


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::ffff:7f00:1", "::ffff:7f00:1"),
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("localhost", None),
        ("example.com", None),
    ],
)
def test_literal_address_reads_every_ipv4_spelling(host: str, address: str | None) -> None:
    expected = ip_address(address) if address else None
    assert literal_address(host) == expected


def test_check_literal_refuses_legacy_loopback_spellings() -> None:
    for host in ("127.1", "2130706433", "[::1]"):
        with pytest.raises(ApplicationError, match="refused to connect"):
            AddressGuard().check_literal(host)
    AddressGuard().check_literal("localhost")  # names are the resolver's job


async def test_resolver_refuses_a_name_that_resolves_only_to_loopback() -> None:
    resolver = GuardedResolver(AddressGuard())
    with pytest.raises(ApplicationError) as caught:
        await resolver.resolve("localhost", 80, family=socket.AF_UNSPEC)
    assert caught.value.type == "AddressNotAllowed"
    assert "localhost" in caught.value.message
    await resolver.close()


async def test_resolver_keeps_loopback_when_it_is_allowed() -> None:
    resolver = GuardedResolver(AddressGuard(["127.0.0.0/8"]))
    results = await resolver.resolve("localhost", 80, family=socket.AF_INET)
    assert results and all(r["host"].startswith("127.") for r in results)
    await resolver.close()


class _FixedResolver(AbstractResolver):
    """Answers every name with the same addresses (a DNS that rebinds to internal ones)."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_resolver_drops_internal_addresses_and_keeps_public_ones() -> None:
    resolver = GuardedResolver(AddressGuard(), _FixedResolver("10.0.0.1", "93.184.216.34"))
    results = await resolver.resolve("mixed.example", 443)
    assert [r["host"] for r in results] == ["93.184.216.34"]
