"""Definitions and their immutable versions.

A definition belongs to a tenant, or to the instance (``owner`` None). Tenants read instance
definitions too (their own name wins when both exist) but write only their own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from starter.db.models import DefinitionVersion, StoredDefinition
from starter.db.types import utcnow
from starter.errors import Conflict, Forbidden, NotFound

Owner = str | None
"""A tenant id, or None for the instance."""
ListScope = Literal["tenant", "instance", "all"]


@dataclass(frozen=True)
class Author:
    """Who wrote a version: the key's name and prefix."""

    name: str
    key: str


@dataclass(frozen=True)
class Content:
    """A definition's content as stored: the JSON data and its canonical hash."""

    data: dict[str, Any]
    hash: str
    description: str | None
    is_template: bool

    @classmethod
    def of(cls, data: dict[str, Any]) -> Content:
        """The stored form of definition data; the hash is the sha256 of canonical JSON."""
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        description = data.get("description")
        return cls(
            data=data,
            hash=hashlib.sha256(canonical.encode()).hexdigest(),
            description=description if isinstance(description, str) else None,
            is_template=bool(data.get("params")),
        )


async def create_definition(
    session: AsyncSession, owner: Owner, name: str, content: Content, author: Author
) -> tuple[StoredDefinition, DefinitionVersion]:
    """Store a new definition as version 1.

    Raises:
        Conflict: If the owner has a definition of that name.
    """
    if await _owned(session, owner, name) is not None:
        raise Conflict(f"definition {name!r} exists; PUT /v1/definitions/{name} adds a version")
    row = StoredDefinition(
        tenant_id=owner,
        name=name,
        current_version=1,
        active=True,
        is_template=content.is_template,
        description=content.description,
    )
    session.add(row)
    await session.flush()
    version = _version(row, 1, content, author)
    session.add(version)
    await session.flush()
    return row, version


async def add_version(
    session: AsyncSession, row: StoredDefinition, content: Content, author: Author
) -> tuple[DefinitionVersion, bool]:
    """Make ``content`` the current version: a new version, unless it equals the current one.

    Returns:
        The current version and whether it is new.
    """
    current = await get_version(session, row, row.current_version)
    if current.content_hash == content.hash:
        return current, False
    latest = await session.scalar(
        select(DefinitionVersion.version)
        .where(DefinitionVersion.definition_id == row.id)
        .order_by(DefinitionVersion.version.desc())
        .limit(1)
    )
    version = _version(row, (latest or 0) + 1, content, author)
    session.add(version)
    _point_at(row, version, content)
    await session.flush()
    return version, True


async def readable(session: AsyncSession, owner: Owner, name: str) -> StoredDefinition:
    """The definition ``owner`` reads under ``name``: its own, else the instance's.

    Raises:
        NotFound: If there is none.
    """
    row = await _owned(session, owner, name)
    if row is None and owner is not None:
        row = await _owned(session, None, name)
    if row is None:
        raise NotFound(f"no definition {name!r}")
    return row


_DEFINITIONS = StoredDefinition.__table__
_VERSIONS = DefinitionVersion.__table__
_READABLE = select(_DEFINITIONS).where(
    or_(_DEFINITIONS.c.tenant_id == bindparam("owner"), _DEFINITIONS.c.tenant_id.is_(None)),
    _DEFINITIONS.c.name == bindparam("name"),
)
_INSTANCE = select(_DEFINITIONS).where(
    _DEFINITIONS.c.tenant_id.is_(None), _DEFINITIONS.c.name == bindparam("name")
)
_CONTENT = select(_VERSIONS.c.content).where(
    _VERSIONS.c.definition_id == bindparam("definition_id"),
    _VERSIONS.c.version == bindparam("version"),
)


def readable_row(connection: Connection, owner: Owner, name: str) -> StoredDefinition:
    """:func:`readable` in one prebuilt statement on a synchronous connection (the hot path,
    :mod:`starter.db.runner`); the definition is detached.

    Raises:
        NotFound: If there is none.
    """
    if owner is None:
        rows = list(connection.execute(_INSTANCE, {"name": name}))
    else:
        rows = list(connection.execute(_READABLE, {"owner": owner, "name": name}))
    if not rows:
        raise NotFound(f"no definition {name!r}")
    own = [row for row in rows if row.tenant_id is not None]
    return StoredDefinition(**(own or rows)[0]._mapping)


def version_content(connection: Connection, row: StoredDefinition, number: int) -> dict[str, Any]:
    """The content of one version of a definition, read as :func:`get_version` reads it.

    Raises:
        NotFound: If it has no such version.
    """
    params = {"definition_id": row.id, "version": number}
    content = connection.execute(_CONTENT, params).scalar()
    if content is None:
        raise NotFound(f"definition {row.name!r} has no version {number}")
    return dict(content)


async def writable(session: AsyncSession, owner: Owner, name: str) -> StoredDefinition:
    """The owner's own definition ``name``, locked for update.

    Raises:
        Forbidden: If only an instance definition has that name (tenants only read those).
        NotFound: If there is none.
    """
    row = await _owned(session, owner, name, for_update=True)
    if row is not None:
        return row
    if owner is not None and await _owned(session, None, name) is not None:
        raise Forbidden(f"definition {name!r} belongs to the instance; tenants can only read it")
    raise NotFound(f"no definition {name!r}")


async def get_version(
    session: AsyncSession, row: StoredDefinition, number: int
) -> DefinitionVersion:
    """One version of a definition.

    Raises:
        NotFound: If it has no such version.
    """
    version = await session.scalar(
        select(DefinitionVersion).where(
            DefinitionVersion.definition_id == row.id, DefinitionVersion.version == number
        )
    )
    if version is None:
        raise NotFound(f"definition {row.name!r} has no version {number}")
    return version


async def list_versions(
    session: AsyncSession, row: StoredDefinition, *, limit: int, after: int | None
) -> list[DefinitionVersion]:
    """Versions of a definition, newest first, from before version ``after``."""
    query = select(DefinitionVersion).where(DefinitionVersion.definition_id == row.id)
    if after is not None:
        query = query.where(DefinitionVersion.version < after)
    query = query.order_by(DefinitionVersion.version.desc()).limit(limit)
    return list(await session.scalars(query))


async def rollback(session: AsyncSession, row: StoredDefinition, number: int) -> DefinitionVersion:
    """Make an earlier (or any existing) version the current one again.

    Raises:
        NotFound: If there is no such version.
    """
    version = await get_version(session, row, number)
    _point_at(row, version, Content.of(version.content))
    await session.flush()
    return version


async def set_active(session: AsyncSession, row: StoredDefinition, active: bool) -> None:
    """Activate or deactivate a definition (runs of an inactive one cannot start)."""
    if row.active != active:
        row.active = active
        row.updated_at = utcnow()
        await session.flush()


async def list_definitions(
    session: AsyncSession,
    owner: Owner,
    *,
    scope: ListScope,
    limit: int,
    after: tuple[str, int] | None = None,
    name_prefix: str | None = None,
    active: bool | None = None,
    templates: bool | None = None,
) -> list[StoredDefinition]:
    """Definitions ``owner`` can read, by name, from after ``(name, id)``.

    Args:
        session: The request's session.
        owner: The tenant, or None for the instance (which sees only its own).
        scope: A tenant's own, the instance's, or both.
        limit: How many at most.
        after: The ``(name, id)`` of the last row of the previous page.
        name_prefix: Only names starting with this.
        active: Only active (True) or inactive (False) ones.
        templates: Only templates (True) or only plain definitions (False).
    """
    query = select(StoredDefinition).where(_in_scope(owner, scope))
    if name_prefix:
        query = query.where(StoredDefinition.name.startswith(name_prefix, autoescape=True))
    if active is not None:
        query = query.where(StoredDefinition.active.is_(active))
    if templates is not None:
        query = query.where(StoredDefinition.is_template.is_(templates))
    if after is not None:
        name, row_id = after
        query = query.where(
            (StoredDefinition.name > name)
            | ((StoredDefinition.name == name) & (StoredDefinition.id > row_id))
        )
    query = query.order_by(StoredDefinition.name, StoredDefinition.id).limit(limit)
    return list(await session.scalars(query))


def _in_scope(owner: Owner, scope: ListScope) -> ColumnElement[bool]:
    instance = StoredDefinition.tenant_id.is_(None)
    if owner is None or scope == "instance":
        return instance
    own = StoredDefinition.tenant_id == owner
    return own if scope == "tenant" else own | instance


async def _owned(
    session: AsyncSession, owner: Owner, name: str, *, for_update: bool = False
) -> StoredDefinition | None:
    whose = (
        StoredDefinition.tenant_id.is_(None)
        if owner is None
        else StoredDefinition.tenant_id == owner
    )
    query = select(StoredDefinition).where(whose, StoredDefinition.name == name)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


def _version(
    row: StoredDefinition, number: int, content: Content, author: Author
) -> DefinitionVersion:
    return DefinitionVersion(
        definition_id=row.id,
        version=number,
        content=content.data,
        content_hash=content.hash,
        author=author.name,
        author_key=author.key,
    )


def _point_at(row: StoredDefinition, version: DefinitionVersion, content: Content) -> None:
    row.current_version = version.version
    row.description = content.description
    row.is_template = content.is_template
    row.updated_at = utcnow()
