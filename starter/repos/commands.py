"""The command ledger: each command id of a tenant is accepted once, with the runs it started.

:func:`lookup` and :func:`add` are the hot path of ``POST /v1/commands``: prebuilt Core
statements on a synchronous connection (:mod:`starter.db.runner`), answering detached
:class:`CommandRecord` objects.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from starter.db.models import CommandRecord
from starter.db.types import utcnow
from starter.errors import NotFound

_LEDGER = CommandRecord.__table__
_LOOKUP = select(_LEDGER).where(
    _LEDGER.c.tenant_id == bindparam("tenant"), _LEDGER.c.command_id == bindparam("command_id")
)
_ADD = insert(CommandRecord)


def lookup(connection: Connection, tenant: str, command_id: str) -> CommandRecord | None:
    """The tenant's ledger entry of ``command_id``, if there is one (detached)."""
    row = connection.execute(_LOOKUP, {"tenant": tenant, "command_id": command_id}).first()
    return None if row is None else CommandRecord(**row._mapping)


def add(
    connection: Connection,
    tenant: str,
    command_id: str,
    command_type: str,
    payload_hash: str,
    runs: list[dict[str, Any]],
) -> CommandRecord:
    """Add a command to the ledger with the runs it started; the entry, detached.

    Raises:
        sqlalchemy.exc.IntegrityError: If the tenant's ledger has the id already (a
            concurrent request recorded it first).
    """
    values = {
        "tenant_id": tenant,
        "command_id": command_id,
        "type": command_type,
        "payload_hash": payload_hash,
        "workflow_ids": [run["workflow_id"] for run in runs],
        "runs": runs,
        "created_at": utcnow(),
    }
    connection.execute(_ADD, values)
    return CommandRecord(**values)


async def find(session: AsyncSession, tenant: str, command_id: str) -> CommandRecord | None:
    """The tenant's ledger entry of ``command_id``, if there is one."""
    return await session.scalar(
        select(CommandRecord).where(
            CommandRecord.tenant_id == tenant, CommandRecord.command_id == command_id
        )
    )


async def get(session: AsyncSession, tenant: str, command_id: str) -> CommandRecord:
    """The tenant's ledger entry of ``command_id``.

    Raises:
        NotFound: If the tenant sent no such command.
    """
    row = await find(session, tenant, command_id)
    if row is None:
        raise NotFound(f"no command {command_id!r}")
    return row


async def list_commands(
    session: AsyncSession,
    tenant: str,
    *,
    limit: int,
    after: int | None = None,
    command_type: str | None = None,
) -> list[CommandRecord]:
    """The tenant's commands, newest first, from before the entry ``after``."""
    query = select(CommandRecord).where(CommandRecord.tenant_id == tenant)
    if command_type is not None:
        query = query.where(CommandRecord.type == command_type)
    if after is not None:
        query = query.where(CommandRecord.id < after)
    query = query.order_by(CommandRecord.id.desc()).limit(limit)
    return list(await session.scalars(query))
