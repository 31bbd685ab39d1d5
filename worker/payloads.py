"""The payload store: large payloads kept in files, their history holding only a reference.

Temporal refuses a payload over 2 MB and a gRPC message over 4 MB, and the Python SDK warns
from 512 KB. A run's input, a for_each's outputs or a continue-as-new state can pass that. With
``DAGFLOW_PAYLOAD_STORE`` set to a directory, every payload of at least
``DAGFLOW_PAYLOAD_STORE_THRESHOLD`` bytes (256 KiB by default) is written there by Temporal's
external storage (``temporalio.converter.ExternalStorage``), and the event in history holds a
small reference (the driver's name and the SHA-256 of the stored bytes) instead. Whoever
decodes it (worker, starter, CLI, a replay) reads the file back and checks its hash.

The store runs after the payload codec, so with encryption on the files hold encrypted
payloads only. Files are named by the hash of their bytes, so storing the same payload twice
writes one file; storing it again refreshes its modification time, so removing files older
than the namespace's retention period never removes one a history still points to.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowQueryFailedError
from temporalio.converter import (
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)
from temporalio.service import RPCError, RPCStatusCode

STORE_VAR = "DAGFLOW_PAYLOAD_STORE"
"""The setting that turns the store on: a directory every dagflow process can read and write."""
THRESHOLD_VAR = "DAGFLOW_PAYLOAD_STORE_THRESHOLD"
"""The size in bytes from which a payload goes to the store."""
DEFAULT_THRESHOLD = 256 * 1024
"""Temporal's own default: half the SDK's 512 KB warning, an eighth of the 2 MB limit."""
DRIVER_NAME = "dagflow-files"
"""The name in every reference this store writes (a reader must have a driver of that name)."""
CLAIM_KEY = "sha256"
"""The claim's one field: the SHA-256, in hex, of the stored (serialized) payload."""

TOO_LARGE = (
    f"over Temporal's limit of 2 MB per payload; set {STORE_VAR} on every dagflow process "
    "(workers, starters, CLI) to keep large payloads in the payload store"
)
"""What to say when Temporal refuses a payload."""

_HEX = re.compile(r"^[0-9a-f]{64}$")


_QUERY_TOO_LARGE = ("size exceeds limit", "message too large")
"""How a query fails when its answer is over Temporal's payload limit ("Blob data size
exceeds limit") or over gRPC's message limit ("GRPC Message too large")."""


def too_large(error: BaseException) -> bool:
    """Whether Temporal refused a request, or a worker a query's answer, because a payload in it
    is over its size limit."""
    if isinstance(error, WorkflowQueryFailedError):
        return any(mark in error.message.lower() for mark in _QUERY_TOO_LARGE)
    return (
        isinstance(error, RPCError)
        and error.status == RPCStatusCode.INVALID_ARGUMENT
        and "size exceeds limit" in error.message
    )


class PayloadStoreError(RuntimeError):
    """A referenced payload is missing from the store, or its bytes do not match its hash."""


class FileDriver(StorageDriver):
    """Payloads as files under ``root``, named by the SHA-256 of their serialized bytes.

    Args:
        root: The directory (made if missing). Every process of a deployment must see the same
            files: one machine's disk, or a shared volume.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def name(self) -> str:
        """The name written into references."""
        return DRIVER_NAME

    def type(self) -> str:
        """The driver's kind (the same for every instance)."""
        return "dagflow.files"

    def path(self, digest: str) -> Path:
        """Where the payload with this hash lives."""
        return self.root / digest[:2] / digest

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        """Write each payload (unless a file with its hash is there) and return its hash."""
        blobs = [p.SerializeToString() for p in payloads]
        digests = await asyncio.to_thread(self._write_all, blobs)
        return [StorageDriverClaim(claim_data={CLAIM_KEY: d}) for d in digests]

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        """Read each claimed payload back, checking its hash.

        Raises:
            PayloadStoreError: A claim without a valid hash, a missing file, or altered bytes.
        """
        digests = [_digest(c.claim_data) for c in claims]
        blobs = await asyncio.to_thread(lambda: [self._read(d) for d in digests])
        return [Payload.FromString(b) for b in blobs]

    def _write_all(self, blobs: list[bytes]) -> list[str]:
        return [self._write(b) for b in blobs]

    def _write(self, blob: bytes) -> str:
        digest = hashlib.sha256(blob).hexdigest()
        path = self.path(digest)
        if path.exists():
            os.utime(path)
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def _read(self, digest: str) -> bytes:
        path = self.path(digest)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise PayloadStoreError(
                f"payload {digest} is not in the payload store {self.root} "
                f"(is {STORE_VAR} the same directory for every dagflow process?)"
            ) from None
        if hashlib.sha256(blob).hexdigest() != digest:
            raise PayloadStoreError(f"payload {digest} in {self.root} does not match its hash")
        return blob


def _digest(claim: Mapping[str, str]) -> str:
    digest = claim.get(CLAIM_KEY, "")
    if not _HEX.match(digest):
        raise PayloadStoreError(f"payload reference without a valid {CLAIM_KEY}: {dict(claim)!r}")
    return digest


@dataclass(frozen=True)
class PayloadStore:
    """Where large payloads go, and from what size."""

    root: Path
    threshold: int = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError(f"{THRESHOLD_VAR} must be 0 or more bytes, not {self.threshold}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PayloadStore | None:
        """The store of ``DAGFLOW_PAYLOAD_STORE`` (and its threshold), or None when unset.

        Raises:
            ValueError: The threshold is not a whole number of bytes, or is negative.
        """
        env = os.environ if environ is None else environ
        root = env.get(STORE_VAR, "").strip()
        if not root:
            return None
        text = env.get(THRESHOLD_VAR, "").strip()
        try:
            threshold = int(text) if text else DEFAULT_THRESHOLD
        except ValueError:
            raise ValueError(f"{THRESHOLD_VAR}: not a number of bytes: {text!r}") from None
        return cls(Path(root).expanduser(), threshold)

    def external_storage(self) -> ExternalStorage:
        """Temporal's external storage configured with this store's driver and threshold."""
        return ExternalStorage(
            drivers=[FileDriver(self.root)], payload_size_threshold=self.threshold
        )
