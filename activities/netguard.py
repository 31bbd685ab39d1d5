"""The outbound address guard: steps may not reach internal networks unless allowed.

Loopback, private, link-local, unspecified, multicast, reserved and shared (CGNAT) addresses
are refused, including their IPv4-mapped and 6to4 IPv6 forms, unless they fall inside a network
the deployment allows (``--allow-network CIDR`` / ``DAGFLOW_ALLOWED_NETWORKS``).

The check runs on the address the connection is made to: :class:`GuardedResolver` filters what
DNS returns, so a name cannot resolve to a public address for the check and to a private one for
the connection. Hosts written as IP literals never reach a resolver, so callers check them with
:meth:`AddressGuard.check_literal` before each request.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)

from aiohttp import DefaultResolver
from aiohttp.abc import AbstractResolver, ResolveResult

from activities import errors

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

SHARED_ADDRESS_SPACE = IPv4Network("100.64.0.0/10")
"""CGNAT (RFC 6598): neither private nor global, and not flagged by :mod:`ipaddress`."""


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    """Parse CIDRs such as ``10.0.0.0/8`` or ``::1``; comma-separated lists are split.

    Args:
        values: Networks as given by flags or ``DAGFLOW_ALLOWED_NETWORKS``.

    Returns:
        The networks (host bits are allowed and ignored).

    Raises:
        ValueError: If a value is not a network.
    """
    parts = (part.strip() for value in values for part in value.split(","))
    return [ip_network(part, strict=False) for part in parts if part]


def refusal_reason(address: IPAddress) -> str | None:
    """Why the address is internal (``"loopback"``, ``"private"``, ...), or None if public."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return refusal_reason(embedded)
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("shared (CGNAT)", address in SHARED_ADDRESS_SPACE),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    )
    return next((reason for reason, hit in checks if hit), None)


def _embedded_ipv4(address: IPAddress) -> IPv4Address | None:
    if isinstance(address, IPv6Address):
        return address.ipv4_mapped or address.sixtofour
    return None


class AddressGuard:
    """Decides which addresses outbound steps may connect to.

    Args:
        allowed: Networks that are reachable even though they are internal, as CIDR strings or
            :mod:`ipaddress` networks.
    """

    def __init__(self, allowed: Iterable[str | IPNetwork] = ()) -> None:
        self.allowed: tuple[IPNetwork, ...] = tuple(
            ip_network(net, strict=False) if isinstance(net, str) else net for net in allowed
        )

    def is_allowed(self, address: IPAddress) -> bool:
        """Whether a connection to ``address`` may be made."""
        if refusal_reason(address) is None:
            return True
        candidates = [address, _embedded_ipv4(address)]
        return any(
            candidate in network
            for candidate in candidates
            if candidate is not None
            for network in self.allowed
            if network.version == candidate.version
        )

    def check(self, host: str, address: IPAddress) -> None:
        """Refuse a connection to ``address`` (which ``host`` names) unless it is allowed.

        Raises:
            ApplicationError: Non-retryable, type ``AddressNotAllowed``.
        """
        if not self.is_allowed(address):
            raise errors.address_not_allowed(host, str(address), refusal_reason(address) or "")

    def check_literal(self, host: str) -> None:
        """Check a URL host that is an IP literal; names are left to :class:`GuardedResolver`.

        Legacy numeric IPv4 forms (``127.1``, ``2130706433``, ``0x7f.1``) count as literals,
        since the socket layer would connect to the address they spell.

        Raises:
            ApplicationError: Non-retryable, type ``AddressNotAllowed``.
        """
        address = literal_address(host)
        if address is not None:
            self.check(host, address)


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host spells if it is an IP literal (any IPv4 form), else None."""
    try:
        return ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that drops addresses the guard refuses.

    If every address a name resolves to is refused, resolving fails with the guard's
    ``AddressNotAllowed`` error, which names the host and the first refused address.

    Args:
        guard: The policy to apply.
        resolver: The resolver to wrap; aiohttp's default resolver when None (create this
            object inside the running event loop).
    """

    def __init__(self, guard: AddressGuard, resolver: AbstractResolver | None = None) -> None:
        self._guard = guard
        self._resolver = resolver or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` and keep only the addresses the guard allows."""
        results = await self._resolver.resolve(host, port, family)
        allowed = [r for r in results if self._guard.is_allowed(ip_address(r["host"]))]
        if results and not allowed:
            self._guard.check(host, ip_address(results[0]["host"]))
        return allowed

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._resolver.close()
