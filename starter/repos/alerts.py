"""Alert rules of a tenant and the deliveries of their alerts.

A tenant reads and writes only its own rules and deliveries; another tenant's answer 404.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from activities.secrets import SecretStore
from starter.db.models import AlertDelivery, AlertRule
from starter.db.types import utcnow
from starter.errors import NotFound
from starter.settings import ServiceSettings


async def create_rule(session: AsyncSession, tenant: str, **fields: Any) -> AlertRule:
    """Add a rule of ``tenant`` with the columns in ``fields``."""
    row = AlertRule(tenant_id=tenant, **fields)
    session.add(row)
    await session.flush()
    return row


async def get_rule(session: AsyncSession, tenant: str, rule_id: int) -> AlertRule:
    """One of the tenant's rules.

    Raises:
        NotFound: If the tenant has no such rule.
    """
    row = await session.get(AlertRule, rule_id)
    if row is None or row.tenant_id != tenant:
        raise NotFound(f"no alert rule {rule_id}")
    return row


async def list_rules(
    session: AsyncSession, tenant: str, *, limit: int, after: int | None = None
) -> list[AlertRule]:
    """The tenant's rules by id."""
    query = select(AlertRule).where(AlertRule.tenant_id == tenant)
    if after is not None:
        query = query.where(AlertRule.id > after)
    return list(await session.scalars(query.order_by(AlertRule.id).limit(limit)))


async def enabled_rules(session: AsyncSession) -> list[AlertRule]:
    """Every tenant's enabled rules (for the notifier)."""
    query = select(AlertRule).where(AlertRule.enabled.is_(True)).order_by(AlertRule.id)
    return list(await session.scalars(query))


async def list_deliveries(
    session: AsyncSession,
    tenant: str,
    *,
    limit: int,
    before: int | None = None,
    rule_id: int | None = None,
) -> list[AlertDelivery]:
    """The tenant's deliveries, newest first."""
    query = select(AlertDelivery).where(AlertDelivery.tenant_id == tenant)
    if rule_id is not None:
        query = query.where(AlertDelivery.rule_id == rule_id)
    if before is not None:
        query = query.where(AlertDelivery.id < before)
    return list(await session.scalars(query.order_by(AlertDelivery.id.desc()).limit(limit)))


async def delivered_already(session: AsyncSession, rule_id: int, event_key: str) -> bool:
    """Whether the rule has an alert for the event (in any state)."""
    query = select(AlertDelivery.id).where(
        AlertDelivery.rule_id == rule_id, AlertDelivery.event_key == event_key
    )
    return await session.scalar(query) is not None


def idempotency_key(rule_id: int, event_key: str) -> str:
    """The Idempotency-Key of a rule's alert about an event: the same on every attempt, and
    the same whichever starter process sends it."""
    return hashlib.sha256(f"{rule_id}:{event_key}".encode()).hexdigest()[:32]


async def claim(
    session: AsyncSession,
    rule: AlertRule,
    event_key: str,
    payload: dict[str, Any],
    *,
    lease_until: datetime,
) -> AlertDelivery | None:
    """Record a new alert as ``pending``; None if it was recorded before (by this process or
    another), so that only the process whose insert wins sends it.

    ``session`` must not be inside a transaction: the insert commits on its own.
    """
    row = AlertDelivery(
        rule_id=rule.id,
        tenant_id=rule.tenant_id,
        event_key=event_key,
        idempotency_key=idempotency_key(rule.id, event_key),
        payload=payload,
        status="pending",
        attempts=0,
        lease_until=lease_until,
    )
    try:
        async with session.begin():
            session.add(row)
    except IntegrityError:
        return None
    return row


async def record_attempt(
    session: AsyncSession,
    delivery_id: int,
    *,
    status: str,
    http_status: int | None,
    error: str | None,
    lease_until: datetime | None = None,
) -> None:
    """Count one attempt of a delivery and what came of it; a pending one stays leased to
    this process until ``lease_until``."""
    async with session.begin():
        row = await session.get(AlertDelivery, delivery_id)
        if row is None:  # the rule was deleted meanwhile
            return
        row.attempts += 1
        row.status = status
        row.last_status = http_status
        row.last_error = error
        row.lease_until = lease_until if status == "pending" else None
        if status != "pending":
            row.finished_at = utcnow()


async def take_over(
    session: AsyncSession, now: datetime, lease_until: datetime, limit: int = 50
) -> list[AlertDelivery]:
    """Pending deliveries whose lease ran out (their sender stopped), each now leased to the
    caller until ``lease_until``: a compare-and-set on the old lease, so when several
    starters look at once, one takes each.

    ``session`` must not be inside a transaction.
    """
    async with session.begin():
        stale = (
            await session.execute(
                select(AlertDelivery.id, AlertDelivery.lease_until)
                .where(
                    AlertDelivery.status == "pending",
                    (AlertDelivery.lease_until < now) | AlertDelivery.lease_until.is_(None),
                )
                .order_by(AlertDelivery.id)
                .limit(limit)
            )
        ).all()
    taken = []
    for delivery_id, old in stale:
        same = (
            AlertDelivery.lease_until.is_(None)
            if old is None
            else (AlertDelivery.lease_until == old)
        )
        async with session.begin():
            result = await session.execute(
                update(AlertDelivery)
                .where(AlertDelivery.id == delivery_id, AlertDelivery.status == "pending", same)
                .values(lease_until=lease_until)
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) == 1:
                row = await session.get(AlertDelivery, delivery_id, populate_existing=True)
                if row is not None:
                    taken.append(row)
    return taken


def alert_secrets(settings: ServiceSettings) -> SecretStore | None:
    """The store of alert signing secrets (``DAGFLOW_ALERT_SECRETS_FILE``), or None."""
    if not settings.alert_secrets_file:
        return None
    return SecretStore(file=settings.alert_secrets_file)
