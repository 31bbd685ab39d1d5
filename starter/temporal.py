"""The service's link to Temporal: connected lazily, so the service starts without it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio.client import Client

from starter.errors import Unavailable
from worker.client import connect

log = logging.getLogger("dagflow.starter")

RETRY_AFTER = 5.0
"""Seconds a caller is told to wait when Temporal does not answer."""

Connect = Callable[[str, str], Awaitable[Client]]


class TemporalLink:
    """One Temporal client for the service, made on first use and reused after.

    Args:
        address: The frontend, ``host:port``.
        namespace: The namespace runs live in.
        timeout: Seconds to wait for a connection or a health check.
        connector: How to connect (``worker.client.connect``).
    """

    def __init__(
        self, address: str, namespace: str, *, timeout: float, connector: Connect = connect
    ) -> None:
        self.address = address
        self.namespace = namespace
        self.timeout = timeout
        self._connect = connector
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        """The connected client.

        Raises:
            Unavailable: If Temporal does not answer within the timeout.
        """
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await asyncio.wait_for(
                        self._connect(self.address, self.namespace), self.timeout
                    )
                except (RuntimeError, OSError, TimeoutError) as error:
                    log.warning("Temporal at %s does not answer: %s", self.address, error)
                    raise Unavailable(
                        f"Temporal at {self.address} does not answer", retry_after=RETRY_AFTER
                    ) from None
            return self._client

    async def healthy(self) -> bool:
        """Whether Temporal answers a health check now."""
        try:
            client = await self.client()
            return await client.service_client.check_health(timeout=timedelta(seconds=self.timeout))
        except Exception:
            return False
