"""The command ledger: each command id of a tenant is accepted once, with the runs it started."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from starter.db.models import CommandRecord
from starter.errors import NotFound


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


async def record(
    session: AsyncSession,
    tenant: str,
    command_id: str,
    command_type: str,
    payload_hash: str,
    runs: list[dict[str, Any]],
) -> CommandRecord:
    """Add a command to the ledger with the runs it started.

    Raises:
        sqlalchemy.exc.IntegrityError: If the tenant's ledger has the id already (a
            concurrent request recorded it first).
    """
    row = CommandRecord(
        tenant_id=tenant,
        command_id=command_id,
        type=command_type,
        payload_hash=payload_hash,
        workflow_ids=[run["workflow_id"] for run in runs],
        runs=runs,
    )
    session.add(row)
    await session.flush()
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
