"""Bindings of command types to definitions, at instance scope (``owner`` None) or a tenant's.

A tenant reads its own bindings and the instance's, and writes only its own. The bindings of
one type run in :func:`for_command` order: the instance's, then the tenant's, each by
position and then by id (creation).
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import ColumnElement, Connection, bindparam, case, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from starter.db.models import Binding
from starter.errors import Conflict, Forbidden, NotFound
from starter.repos.definitions import Owner

ListScope = Literal["tenant", "instance", "all"]

INSTANCE_FIRST = case((Binding.tenant_id.is_(None), 0), else_=1)
"""0 for instance bindings, 1 for tenant ones: the order commands run them in."""


async def create_binding(
    session: AsyncSession,
    owner: Owner,
    command_type: str,
    definition: str,
    *,
    version: int | None,
    position: int | None,
) -> Binding:
    """Bind ``command_type`` to ``definition`` in the owner's scope.

    Args:
        session: The request's session.
        owner: The tenant, or None for the instance.
        command_type: The command type.
        definition: The definition's name.
        version: A pinned version, or None for the current one at each command.
        position: Where among the scope's bindings of the type; after the last when None.

    Raises:
        Conflict: If the scope binds that definition to the type already.
    """
    same = select(Binding.id).where(
        _owned_by(owner),
        Binding.command_type == command_type,
        Binding.definition_name == definition,
    )
    if await session.scalar(same) is not None:
        raise Conflict(f"{definition!r} is bound to {command_type!r} already")
    if position is None:
        last = await session.scalar(
            select(func.max(Binding.position)).where(
                _owned_by(owner), Binding.command_type == command_type
            )
        )
        position = 0 if last is None else last + 1
    row = Binding(
        tenant_id=owner,
        command_type=command_type,
        definition_name=definition,
        version=version,
        position=position,
    )
    session.add(row)
    await session.flush()
    return row


async def readable(session: AsyncSession, owner: Owner, binding_id: int) -> Binding:
    """A binding the owner reads: its own, or (for a tenant) an instance one.

    Raises:
        NotFound: If there is none (another tenant's bindings are not found either).
    """
    row = await session.get(Binding, binding_id)
    if row is None or (row.tenant_id is not None and row.tenant_id != owner):
        raise NotFound(f"no binding {binding_id}")
    return row


async def delete_binding(session: AsyncSession, owner: Owner, binding_id: int) -> Binding:
    """Remove one of the owner's bindings.

    Raises:
        Forbidden: If a tenant names an instance binding (tenants cannot remove those).
        NotFound: If there is none.
    """
    row = await _own(session, owner, binding_id, "remove")
    await session.delete(row)
    await session.flush()
    return row


async def update_binding(
    session: AsyncSession,
    owner: Owner,
    binding_id: int,
    changes: dict[str, int | None],
) -> Binding:
    """Change one of the owner's bindings: ``version`` (None unpins) and ``position``.

    Raises:
        Forbidden: If a tenant names an instance binding (tenants cannot change those).
        NotFound: If there is none.
    """
    row = await _own(session, owner, binding_id, "change")
    if "version" in changes:
        row.version = changes["version"]
    position = changes.get("position")
    if position is not None:
        row.position = position
    await session.flush()
    return row


async def list_bindings(
    session: AsyncSession,
    owner: Owner,
    *,
    scope: ListScope,
    limit: int,
    after: tuple[str, int, int, int] | None = None,
    command_type: str | None = None,
) -> list[Binding]:
    """Bindings the owner reads, by type and then in the order commands run them.

    Args:
        session: The request's session.
        owner: The tenant, or None for the instance (which sees only its own).
        scope: A tenant's own, the instance's, or both.
        limit: How many at most.
        after: The sort key ``(type, 0 instance | 1 tenant, position, id)`` of the last row
            of the previous page.
        command_type: Only bindings of this type.
    """
    query = select(Binding).where(_in_scope(owner, scope))
    if command_type is not None:
        query = query.where(Binding.command_type == command_type)
    order = (Binding.command_type, INSTANCE_FIRST, Binding.position, Binding.id)
    if after is not None:
        query = query.where(tuple_(*order) > tuple_(*after))
    return list(await session.scalars(query.order_by(*order).limit(limit)))


_BINDINGS = Binding.__table__
_FOR_COMMAND = (
    select(_BINDINGS)
    .where(
        or_(_BINDINGS.c.tenant_id.is_(None), _BINDINGS.c.tenant_id == bindparam("tenant")),
        _BINDINGS.c.command_type == bindparam("command_type"),
    )
    .order_by(
        case((_BINDINGS.c.tenant_id.is_(None), 0), else_=1),
        _BINDINGS.c.position,
        _BINDINGS.c.id,
    )
)


def for_command(connection: Connection, tenant: str, command_type: str) -> list[Binding]:
    """The bindings a tenant's command of ``command_type`` starts, in the order it starts
    them: the instance's first, then the tenant's, each by position and then id (detached;
    a prebuilt statement on a synchronous connection, :mod:`starter.db.runner`)."""
    params = {"tenant": tenant, "command_type": command_type}
    return [Binding(**row._mapping) for row in connection.execute(_FOR_COMMAND, params)]


def sort_key(row: Binding) -> tuple[str, int, int, int]:
    """The row's key in :func:`list_bindings` order."""
    return (row.command_type, 0 if row.tenant_id is None else 1, row.position, row.id)


async def _own(session: AsyncSession, owner: Owner, binding_id: int, verb: str) -> Binding:
    """One of the owner's bindings, to change or remove."""
    row = await readable(session, owner, binding_id)
    if row.tenant_id != owner:
        message = f"binding {binding_id} belongs to the instance; tenants cannot {verb} it"
        raise Forbidden(message)
    return row


def _owned_by(owner: Owner) -> ColumnElement[bool]:
    return Binding.tenant_id.is_(None) if owner is None else Binding.tenant_id == owner


def _in_scope(owner: Owner, scope: ListScope) -> ColumnElement[bool]:
    instance = Binding.tenant_id.is_(None)
    if owner is None or scope == "instance":
        return instance
    own = Binding.tenant_id == owner
    return own if scope == "tenant" else own | instance
