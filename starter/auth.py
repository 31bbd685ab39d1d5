"""API keys and who is calling.

A key reads ``dfk_<prefix>_<secret>``: the 8-character prefix identifies it (and is shown in
listings), the 32-character secret is random. Only the sha256 of the whole key is stored, so a
key is shown once, at creation. A request's key is found by its prefix and then compared by
hash in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from starter.errors import Unauthorized
from starter.repos import keys as key_repo

KEY_PATTERN = re.compile(r"^dfk_([a-z0-9]{8})_([A-Za-z0-9]{32})$")
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits

BOOTSTRAP_KEY_ID = "instance"
"""The key id of the bootstrap instance key from the settings."""


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: a tenant's key, or an instance key (``tenant_id`` None)."""

    tenant_id: str | None
    key_id: str
    key_name: str
    key_prefix: str

    @property
    def is_instance(self) -> bool:
        """Whether the key administers the instance rather than belonging to a tenant."""
        return self.tenant_id is None

    @property
    def tenant(self) -> str:
        """The tenant id (only for tenant keys)."""
        assert self.tenant_id is not None, "an instance key has no tenant"
        return self.tenant_id


@dataclass(frozen=True)
class NewKeyMaterial:
    """A freshly generated key: the text to show once, and what is stored."""

    key: str
    prefix: str
    hash: str


def hash_key(key: str) -> str:
    """The stored form of a key: its sha256, in hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> NewKeyMaterial:
    """A new random key."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(32))
    key = f"dfk_{prefix}_{secret}"
    return NewKeyMaterial(key=key, prefix=prefix, hash=hash_key(key))


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header.

    Raises:
        Unauthorized: If the header is missing or not a bearer token.
    """
    if not authorization:
        raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must read 'Bearer <key>'")
    return token.strip()


async def authenticate(session: AsyncSession, token: str, bootstrap_hash: str | None) -> Principal:
    """The principal a key stands for.

    Args:
        session: The request's session.
        token: The key as sent.
        bootstrap_hash: The hash of the instance key from the settings, if one is set.

    Raises:
        Unauthorized: If the key is unknown, malformed or revoked.
    """
    digest = hash_key(token)
    if bootstrap_hash is not None and hmac.compare_digest(digest, bootstrap_hash):
        return Principal(None, BOOTSTRAP_KEY_ID, "instance (bootstrap)", BOOTSTRAP_KEY_ID)
    match = KEY_PATTERN.match(token)
    row = await key_repo.by_prefix(session, match.group(1)) if match else None
    if row is None or not hmac.compare_digest(digest, row.hash):
        raise Unauthorized("unknown API key")
    if row.revoked_at is not None:
        raise Unauthorized("this API key was revoked")
    return Principal(row.tenant_id, row.id, row.name, row.prefix)
