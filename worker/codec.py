"""Payload encryption: an AES-GCM :class:`PayloadCodec` with a keyring, bound to the tenant.

Every payload dagflow writes to Temporal (inputs, outputs, signals, step inputs and results,
failure messages) is encrypted with the keyring's current key before it leaves the process.
The encrypted payload's metadata names the key (``encryption-key-id``) and the tenant
(``encryption-tenant``); both are authenticated as associated data, so neither can be changed
without the payload failing to decode.

The tenant comes from Temporal's serialization context: a run's workflow id reads
``<tenant>/<definition>/<key>`` (its child batches and child runs start the same way), and the
SDK gives a codec the workflow id of the run a payload belongs to, in the client and in the
worker. When a payload is decoded for a run, its tenant must be that run's tenant: a payload
copied from tenant A's history into a signal or start of tenant B's run fails to decode. A
payload encoded with no run in view (the codec server's ``/codec/encode`` for an instance key)
carries the empty tenant, which any run accepts: only instance keys and the keyring's holders
can make one.

Payloads that are not encrypted pass through unchanged, so turning encryption on keeps older
runs readable.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec, SerializationContext, WithSerializationContext

ENCODING = b"binary/encrypted"
"""The ``encoding`` metadata of an encrypted payload."""
KEY_ID = "encryption-key-id"
"""Metadata: the id of the key that encrypted the payload."""
TENANT = "encryption-tenant"
"""Metadata: the tenant the payload belongs to (empty: none), authenticated with the data."""
ENV_VAR = "DAGFLOW_ENCRYPTION_KEYS"
"""The one setting that turns encryption on: ``id:base64key,id:base64key``, first current."""

_NONCE = 12
_AAD_PREFIX = b"dagflow-payload-v1\x00"
_KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class DecryptionError(ValueError):
    """A payload that cannot be decoded: unknown key, tampered, or another tenant's."""


def tenant_of(workflow_id: str) -> str:
    """The tenant of a run's workflow id (``<tenant>/<definition>/<key>``); '' if none."""
    tenant, slash, _ = workflow_id.partition("/")
    return tenant if slash else ""


@dataclass(frozen=True, repr=False)
class Keyring:
    """Keys by id; ``current`` encrypts, every key decrypts (so rotation keeps old runs).

    Its repr names the key ids only: keys never reach a log.
    """

    keys: Mapping[str, bytes]
    current: str

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ValueError(f"the current key {self.current!r} is not in the keyring")

    def __repr__(self) -> str:
        return f"Keyring(current={self.current!r}, ids={sorted(self.keys)!r})"

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """Read ``id:base64key,id:base64key`` (the first is current; 16, 24 or 32 bytes).

        Raises:
            ValueError: Naming the entry's position or id, never the key.
        """
        keys: dict[str, bytes] = {}
        for position, entry in enumerate(filter(None, (e.strip() for e in text.split(","))), 1):
            key_id, colon, encoded = entry.partition(":")
            key_id = key_id.strip()
            if not colon or not _KEY_ID_PATTERN.match(key_id):
                raise ValueError(
                    f"encryption key {position}: write it as id:base64key "
                    "(id of letters, digits, '.', '_' or '-')"
                )
            if key_id in keys:
                raise ValueError(f"encryption key id {key_id!r} is given twice")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"encryption key {key_id!r} is not valid base64") from None
            if len(key) not in (16, 24, 32):
                raise ValueError(
                    f"encryption key {key_id!r} must be 16, 24 or 32 bytes, not {len(key)}"
                )
            keys[key_id] = key
        if not keys:
            raise ValueError("no encryption key given")
        return cls(keys, next(iter(keys)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Keyring | None:
        """The keyring of ``DAGFLOW_ENCRYPTION_KEYS``, or None when it is unset or empty."""
        text = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
        return cls.parse(text) if text else None

    @staticmethod
    def generate_key() -> str:
        """A new random 256-bit key, in base64."""
        return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


def _aad(key_id: str, tenant: str) -> bytes:
    return _AAD_PREFIX + key_id.encode() + b"\x00" + tenant.encode()


def encrypt(keyring: Keyring, payload: Payload, tenant: str) -> Payload:
    """One payload encrypted with the current key for ``tenant``."""
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(keyring.keys[keyring.current]).encrypt(
        nonce, payload.SerializeToString(), _aad(keyring.current, tenant)
    )
    return Payload(
        metadata={
            "encoding": ENCODING,
            KEY_ID: keyring.current.encode(),
            TENANT: tenant.encode(),
        },
        data=nonce + sealed,
    )


def is_encrypted(payload: Payload) -> bool:
    """Whether a payload is one of ours."""
    return payload.metadata.get("encoding") == ENCODING


def payload_tenant(payload: Payload) -> str:
    """The tenant an encrypted payload claims (authenticated only once it decrypts)."""
    return payload.metadata.get(TENANT, b"").decode(errors="replace")


def decrypt(keyring: Keyring, payload: Payload) -> Payload:
    """An encrypted payload's plain payload (its tenant checked by the caller).

    Raises:
        DecryptionError: If the key is unknown or the payload or its metadata were altered.
    """
    key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
    key = keyring.keys.get(key_id)
    if key is None:
        raise DecryptionError(f"payload encrypted with key {key_id!r}, which is not in the keyring")
    data = payload.data
    try:
        plain = AESGCM(key).decrypt(
            data[:_NONCE], data[_NONCE:], _aad(key_id, payload_tenant(payload))
        )
    except InvalidTag:
        raise DecryptionError(
            f"payload does not decrypt with key {key_id!r}: altered, or moved from elsewhere"
        ) from None
    return Payload.FromString(plain)


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """AES-GCM with the keyring; with a run in view (serialization context), bound to its tenant.

    Args:
        keyring: The keys.
        tenant: The tenant payloads are encoded for and must belong to when decoded; None
            when no run is in view (encode for the empty tenant, decode any tenant's).
    """

    def __init__(self, keyring: Keyring, tenant: str | None = None) -> None:
        self.keyring = keyring
        self.tenant = tenant

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        """The codec bound to the tenant of the run the context names."""
        workflow_id = getattr(context, "workflow_id", None)
        if not workflow_id:
            return self
        return EncryptionCodec(self.keyring, tenant_of(workflow_id))

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt every payload for the codec's tenant."""
        return [encrypt(self.keyring, p, self.tenant or "") for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt our payloads (checking their tenant); others pass through."""
        out = []
        for payload in payloads:
            if not is_encrypted(payload):
                out.append(payload)
                continue
            owner = payload_tenant(payload)
            if self.tenant is not None and owner not in ("", self.tenant):
                raise DecryptionError(
                    f"payload belongs to tenant {owner!r}, not to this run's tenant {self.tenant!r}"
                )
            out.append(decrypt(self.keyring, payload))
        return out
