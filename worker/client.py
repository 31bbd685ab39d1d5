"""One way to reach Temporal, used by the worker, the starter, the CLI and the tests."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter


async def connect(address: str = "localhost:7233", namespace: str = "default") -> Client:
    """Connect to Temporal with dagflow's data converter.

    Args:
        address: The frontend, ``host:port``.
        namespace: The Temporal namespace.

    Returns:
        A connected client.
    """
    return await Client.connect(
        address, namespace=namespace, data_converter=pydantic_data_converter
    )
