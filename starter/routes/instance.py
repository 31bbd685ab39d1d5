"""Instance administration: tenants, and the API keys of tenants and of the instance."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from starter import keys
from starter.api.common import Page
from starter.api.tenants import Key, KeyCreate, NewKey, Tenant, TenantCreate
from starter.auth import generate_key
from starter.db.models import ApiKey
from starter.repos import keys as key_repo
from starter.repos import tenants as tenant_repo
from starter.routes.pagination import PageQuery, decode_cursor, one_page
from starter.routes.table import Call, Route


async def create_tenant(call: Call[TenantCreate]) -> Tenant:
    """Create a tenant (409 if the id is taken)."""
    body = call.input
    row = await tenant_repo.create_tenant(call.session, body.id, body.name or body.id)
    return Tenant.model_validate(row, from_attributes=True)


async def list_tenants(call: Call[PageQuery]) -> Page[Tenant]:
    """List tenants by id."""
    after = decode_cursor(call.input.cursor, str)
    rows = await tenant_repo.list_tenants(
        call.session, limit=call.input.limit + 1, after=after[0] if after else None
    )
    page, cursor = one_page(rows, call.input.limit, lambda row: (row.id,))
    items = [Tenant.model_validate(row, from_attributes=True) for row in page]
    return Page[Tenant](items=items, next_cursor=cursor)


async def get_tenant(call: Call[None]) -> Tenant:
    """Get a tenant."""
    row = await tenant_repo.get_tenant(call.session, call.path("tenant"))
    return Tenant.model_validate(row, from_attributes=True)


async def create_tenant_key(call: Call[KeyCreate]) -> NewKey:
    """Issue an API key for a tenant; the key is in this answer only."""
    tenant = await tenant_repo.get_tenant(call.session, call.path("tenant"))
    return await _new_key(call, tenant.id)


async def list_tenant_keys(call: Call[PageQuery]) -> Page[Key]:
    """List a tenant's keys, oldest first (never the keys themselves)."""
    tenant = await tenant_repo.get_tenant(call.session, call.path("tenant"))
    return await _list_keys(call, tenant.id)


async def revoke_tenant_key(call: Call[None]) -> Key:
    """Revoke a tenant's key; requests with it answer 401 from now on."""
    tenant = await tenant_repo.get_tenant(call.session, call.path("tenant"))
    row = await key_repo.revoke_key(call.session, tenant.id, call.path("key_id"))
    call.request.app[keys.KEY_CACHE].invalidate_after_commit(call.session)
    return _key(row)


async def create_instance_key(call: Call[KeyCreate]) -> NewKey:
    """Issue an instance key; the key is in this answer only."""
    return await _new_key(call, None)


async def list_instance_keys(call: Call[PageQuery]) -> Page[Key]:
    """List instance keys, oldest first (never the keys themselves)."""
    return await _list_keys(call, None)


async def revoke_instance_key(call: Call[None]) -> Key:
    """Revoke an instance key."""
    row = await key_repo.revoke_key(call.session, None, call.path("key_id"))
    call.request.app[keys.KEY_CACHE].invalidate_after_commit(call.session)
    return _key(row)


async def _new_key(call: Call[KeyCreate], tenant: str | None) -> NewKey:
    material = generate_key()
    row = await key_repo.create_key(
        call.session,
        tenant_id=tenant,
        name=call.input.name,
        prefix=material.prefix,
        key_hash=material.hash,
    )
    return NewKey(**_key(row).model_dump(), key=material.key)


async def _list_keys(call: Call[PageQuery], tenant: str | None) -> Page[Key]:
    after = decode_cursor(call.input.cursor, str, str)
    rows = await key_repo.list_keys(
        call.session,
        tenant,
        limit=call.input.limit + 1,
        after=(datetime.fromisoformat(after[0]), after[1]) if after else None,
    )
    page, cursor = one_page(
        rows, call.input.limit, lambda row: (row.created_at.isoformat(), row.id)
    )
    return Page[Key](items=[_key(row) for row in page], next_cursor=cursor)


def _key(row: ApiKey) -> Key:
    return Key(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        tenant=row.tenant_id,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


_TENANTS = "/v1/instance/tenants"
_TENANT_KEYS = f"{_TENANTS}/{{tenant}}/keys"
_KEYS = "/v1/instance/keys"

_ROUTES: list[Route[Any, Any]] = [
    Route("POST", _TENANTS, create_tenant, Tenant, TenantCreate, status=201),
    Route("GET", _TENANTS, list_tenants, Page[Tenant], PageQuery),
    Route("GET", f"{_TENANTS}/{{tenant}}", get_tenant, Tenant),
    Route("POST", _TENANT_KEYS, create_tenant_key, NewKey, KeyCreate, status=201),
    Route("GET", _TENANT_KEYS, list_tenant_keys, Page[Key], PageQuery),
    Route("DELETE", f"{_TENANT_KEYS}/{{key_id}}", revoke_tenant_key, Key),
    Route("POST", _KEYS, create_instance_key, NewKey, KeyCreate, status=201),
    Route("GET", _KEYS, list_instance_keys, Page[Key], PageQuery),
    Route("DELETE", f"{_KEYS}/{{key_id}}", revoke_instance_key, Key),
]
ROUTES = [replace(route, access="instance", tag="instance") for route in _ROUTES]
