"""One way to reach Temporal, used by the worker, the starter, the CLI and the tests."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticPayloadConverter, ToJsonOptions
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime


class CompactPayloadConverter(PydanticPayloadConverter):
    """Pydantic JSON that leaves out fields never set (their defaults come back on decoding),
    so step records and definitions carried by continue-as-new stay small."""

    def __init__(self) -> None:
        super().__init__(ToJsonOptions(exclude_unset=True))


DATA_CONVERTER = DataConverter(payload_converter_class=CompactPayloadConverter)
"""dagflow's data converter: every process that talks to Temporal must use it."""


async def connect(
    address: str = "localhost:7233", namespace: str = "default", *, runtime: Runtime | None = None
) -> Client:
    """Connect to Temporal with dagflow's data converter.

    Args:
        address: The frontend, ``host:port``.
        namespace: The Temporal namespace.
        runtime: The Temporal runtime (the worker's, when it serves metrics); the SDK's
            default runtime when None.

    Returns:
        A connected client.
    """
    return await Client.connect(
        address, namespace=namespace, data_converter=DATA_CONVERTER, runtime=runtime
    )
