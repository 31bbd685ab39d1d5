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

from sqlalchemy import Connection

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


def authenticate(connection: Connection, token: str, bootstrap_hash: str | None) -> Principal:
    """The principal a key stands for.

    Args:
        connection: A connection to the service's database (:mod:`starter.db.runner`).
        token: The key as sent.
        bootstrap_hash: The hash of the instance key from the settings, if one is set.

    Raises:
        Unauthorized: If the key is unknown, malformed or revoked.
    """
    digest = hash_key(token)
    if bootstrap_hash is not None and hmac.compare_digest(digest, bootstrap_hash):
        return Principal(None, BOOTSTRAP_KEY_ID, "instance (bootstrap)", BOOTSTRAP_KEY_ID)
    match = KEY_PATTERN.match(token)
    row = key_repo.by_prefix(connection, match.group(1)) if match else None
    if row is None or not hmac.compare_digest(digest, row.hash):
        raise Unauthorized("unknown API key")
    if row.revoked_at is not None:
        raise Unauthorized("this API key was revoked")
    return Principal(row.tenant_id, row.id, row.name, row.prefix)


CODEC_SESSION_COOKIE = "dagflow_codec_session"
"""The cookie of a codec session (see :func:`codec_session`)."""


def codec_session_secret(encryption_key: bytes) -> bytes:
    """The key that signs codec sessions, derived from the keyring's current encryption key
    (so rotating that key ends every session, and nobody without it can forge one)."""
    return hmac.new(encryption_key, b"dagflow codec session v1", hashlib.sha256).digest()


def codec_session(secret: bytes, principal: Principal, key_hash: str, expires: int) -> str:
    """A codec session cookie for a key: ``<key prefix>.<expiry>.<signature>``.

    The signature covers the key's stored hash, so the session ends when the key is revoked
    (or replaced); the cookie carries neither the key nor its hash.

    Args:
        secret: From :func:`codec_session_secret`.
        principal: Who signed in.
        key_hash: The stored hash of the key they signed in with.
        expires: When it ends, in Unix seconds.
    """
    prefix = principal.key_prefix
    return f"{prefix}.{expires}.{_session_mac(secret, prefix, expires, key_hash)}"


def authenticate_codec_session(
    connection: Connection, cookie: str, bootstrap_hash: str | None, secret: bytes, now: float
) -> Principal:
    """The principal of a codec session cookie (its key read on ``connection``,
    :mod:`starter.db.runner`).

    Raises:
        Unauthorized: If the cookie is malformed, forged or expired, or its key was revoked.
    """
    prefix, _, rest = cookie.partition(".")
    expires_text, _, mac = rest.partition(".")
    if not expires_text.isdigit() or not mac:
        raise Unauthorized("the codec session cookie is malformed; sign in again at /codec/session")
    expires = int(expires_text)
    if prefix == BOOTSTRAP_KEY_ID and bootstrap_hash is not None:
        principal = Principal(None, BOOTSTRAP_KEY_ID, "instance (bootstrap)", BOOTSTRAP_KEY_ID)
        key_hash = bootstrap_hash
    else:
        row = key_repo.by_prefix(connection, prefix)
        if row is None or row.revoked_at is not None:
            raise Unauthorized("the codec session's API key is unknown or revoked")
        principal = Principal(row.tenant_id, row.id, row.name, row.prefix)
        key_hash = row.hash
    if not hmac.compare_digest(mac, _session_mac(secret, prefix, expires, key_hash)):
        raise Unauthorized("the codec session cookie is not valid; sign in again at /codec/session")
    if expires <= now:
        raise Unauthorized("the codec session expired; sign in again at /codec/session")
    return principal


def _session_mac(secret: bytes, prefix: str, expires: int, key_hash: str) -> str:
    return hmac.new(secret, f"{prefix}.{expires}.{key_hash}".encode(), hashlib.sha256).hexdigest()
