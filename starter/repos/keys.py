"""API keys (stored as a prefix and a hash; the key itself is never stored)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from starter.db.models import ApiKey
from starter.db.types import utcnow
from starter.errors import NotFound


async def create_key(
    session: AsyncSession, *, tenant_id: str | None, name: str, prefix: str, key_hash: str
) -> ApiKey:
    """Store a new key of a tenant, or of the instance when ``tenant_id`` is None."""
    key = ApiKey(id=uuid.uuid4().hex, tenant_id=tenant_id, name=name, prefix=prefix, hash=key_hash)
    session.add(key)
    await session.flush()
    return key


_KEYS = ApiKey.__table__
_BY_PREFIX = select(_KEYS).where(_KEYS.c.prefix == bindparam("prefix"))


def by_prefix(connection: Connection, prefix: str) -> ApiKey | None:
    """The key with this prefix, revoked or not (detached; a prebuilt statement on a
    synchronous connection, :mod:`starter.db.runner`)."""
    row = connection.execute(_BY_PREFIX, {"prefix": prefix}).first()
    return None if row is None else ApiKey(**row._mapping)


async def list_keys(
    session: AsyncSession,
    tenant_id: str | None,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
) -> list[ApiKey]:
    """Keys of a tenant (or the instance's), oldest first, from after ``(created_at, id)``."""
    query = select(ApiKey).where(_owned_by(tenant_id))
    if after is not None:
        created, key_id = after
        query = query.where(
            (ApiKey.created_at > created) | ((ApiKey.created_at == created) & (ApiKey.id > key_id))
        )
    query = query.order_by(ApiKey.created_at, ApiKey.id).limit(limit)
    return list(await session.scalars(query))


async def revoke_key(session: AsyncSession, tenant_id: str | None, key_id: str) -> ApiKey:
    """Revoke a key of a tenant (or an instance key); revoking twice keeps the first time.

    Raises:
        NotFound: If the owner has no such key.
    """
    key = await session.scalar(select(ApiKey).where(_owned_by(tenant_id), ApiKey.id == key_id))
    if key is None:
        raise NotFound(f"no key {key_id!r}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await session.flush()
    return key


def _owned_by(tenant_id: str | None) -> ColumnElement[bool]:
    return ApiKey.tenant_id.is_(None) if tenant_id is None else ApiKey.tenant_id == tenant_id
