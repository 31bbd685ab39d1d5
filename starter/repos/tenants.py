"""Tenants."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from starter.db.models import Tenant
from starter.errors import Conflict, NotFound


async def create_tenant(session: AsyncSession, tenant_id: str, name: str) -> Tenant:
    """Add a tenant.

    Raises:
        Conflict: If the id is taken.
    """
    if await session.get(Tenant, tenant_id) is not None:
        raise Conflict(f"tenant {tenant_id!r} exists")
    tenant = Tenant(id=tenant_id, name=name)
    session.add(tenant)
    await session.flush()
    return tenant


async def get_tenant(session: AsyncSession, tenant_id: str) -> Tenant:
    """One tenant.

    Raises:
        NotFound: If there is no such tenant.
    """
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id!r}")
    return tenant


async def list_tenants(session: AsyncSession, *, limit: int, after: str | None) -> list[Tenant]:
    """Tenants by id, from after ``after``; ``limit`` of them at most."""
    query = select(Tenant).order_by(Tenant.id).limit(limit)
    if after is not None:
        query = query.where(Tenant.id > after)
    return list(await session.scalars(query))
