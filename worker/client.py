"""One way to reach Temporal, used by the worker, the starter, the CLI and the tests."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import TypeAdapter
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)
from temporalio.runtime import Runtime

from worker.codec import EncryptionCodec, Keyring
from worker.payloads import PayloadStore

_TYPE_ADAPTERS = functools.lru_cache(maxsize=1024)(TypeAdapter)
"""Type adapters by type hint, shared by every converter of the process. The SDK makes a
payload converter for every workflow run, so a cache per converter would build the adapters
of ``DagRunInput``, ``StepResult``, ... again in every run, in the sandbox. The hints are the
same objects in every run (``workflows`` is passed through the sandbox)."""


class _CompactJsonConverter(PydanticJSONPlainPayloadConverter):
    """Pydantic JSON by the models' aliases (``with``, ``if``: what definitions and the docs
    say, and what the Web UI then shows), leaving out fields never set."""

    def __init__(self) -> None:
        super().__init__(max_cached_type_adapters=0)
        self._type_adapter = _TYPE_ADAPTERS

    def to_payload(self, value: Any) -> Payload | None:
        data = self._schema_serializer.to_json(value, exclude_unset=True, by_alias=True)
        return Payload(metadata={"encoding": self.encoding.encode()}, data=data)


class CompactPayloadConverter(CompositePayloadConverter):
    """The SDK's default payload converters with JSON done by :class:`_CompactJsonConverter`,
    so step records and definitions carried by continue-as-new stay small.

    Models read both their field names and their aliases (``populate_by_name``), so payloads
    written before aliases were used (``with_``) still decode.
    """

    def __init__(self) -> None:
        json_converter = _CompactJsonConverter()
        super().__init__(
            *(
                json_converter if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


DATA_CONVERTER = DataConverter(payload_converter_class=CompactPayloadConverter)
"""dagflow's data converter: every process that talks to Temporal must use it."""


def data_converter(keyring: Keyring | None, store: PayloadStore | None = None) -> DataConverter:
    """dagflow's data converter, encrypting payloads and failure messages with ``keyring``
    (see :mod:`worker.codec`) and keeping payloads over the threshold in ``store`` (see
    :mod:`worker.payloads`; encrypted first); the plain :data:`DATA_CONVERTER` with neither."""
    if keyring is None and store is None:
        return DATA_CONVERTER
    return DataConverter(
        payload_converter_class=CompactPayloadConverter,
        payload_codec=EncryptionCodec(keyring) if keyring else None,
        failure_converter_class=(
            DefaultFailureConverterWithEncodedAttributes
            if keyring
            else DATA_CONVERTER.failure_converter_class
        ),
        external_storage=store.external_storage() if store else None,
    )


async def connect(
    address: str = "localhost:7233",
    namespace: str = "default",
    *,
    runtime: Runtime | None = None,
    keyring: Keyring | None = None,
    store: PayloadStore | None = None,
) -> Client:
    """Connect to Temporal with dagflow's data converter.

    Args:
        address: The frontend, ``host:port``.
        namespace: The Temporal namespace.
        runtime: The Temporal runtime (the worker's, when it serves metrics); the SDK's
            default runtime when None.
        keyring: Encrypt payloads with these keys; by default those of
            ``DAGFLOW_ENCRYPTION_KEYS``, so every process (worker, starter, CLI) agrees.
        store: Keep large payloads in this store; by default that of
            ``DAGFLOW_PAYLOAD_STORE`` (off when unset), for the same reason.

    Returns:
        A connected client.
    """
    keyring = keyring or Keyring.from_env()
    store = store or PayloadStore.from_env()
    return await Client.connect(
        address,
        namespace=namespace,
        data_converter=data_converter(keyring, store),
        runtime=runtime,
    )
