"""The service's tables. Alembic owns the schema (``starter/migrations``); these models are
how the code reads and writes it.

Rows that belong to the instance rather than a tenant have ``tenant_id`` NULL. Names are
unique per scope through two partial unique indexes (one for tenant rows, one for instance
rows), because a plain unique constraint never treats two NULLs as equal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from starter.db.types import JSONDocument, UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with constraint names that are the same on every database."""

    metadata = MetaData(naming_convention=NAMING)


def _scoped_unique(table: str, *columns: str) -> tuple[Index, Index]:
    """Unique ``columns`` per tenant, and unique ``columns`` among instance rows."""
    tenant_rows, instance_rows = text("tenant_id IS NOT NULL"), text("tenant_id IS NULL")
    return (
        Index(
            f"uq_{table}_tenant_{'_'.join(columns)}",
            "tenant_id",
            *columns,
            unique=True,
            sqlite_where=tenant_rows,
            postgresql_where=tenant_rows,
        ),
        Index(
            f"uq_{table}_instance_{'_'.join(columns)}",
            *columns,
            unique=True,
            sqlite_where=instance_rows,
            postgresql_where=instance_rows,
        ),
    )


class Tenant(Base):
    """A tenant: its id is in workflow ids and the ``TenantId`` search attribute."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    """An API key: the prefix identifies it, only the sha256 of the whole key is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    """None for an instance key."""
    name: Mapped[str] = mapped_column(Text)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StoredDefinition(Base):
    """A named definition of a tenant (or of the instance) and its current version."""

    __tablename__ = "definitions"
    __table_args__ = _scoped_unique("definitions", "name")

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    """None for an instance definition (readable by every tenant)."""
    name: Mapped[str] = mapped_column(String(64))
    current_version: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(default=True)
    is_template: Mapped[bool] = mapped_column(default=False)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DefinitionVersion(Base):
    """One immutable version of a definition."""

    __tablename__ = "definition_versions"
    __table_args__ = (UniqueConstraint("definition_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    definition_id: Mapped[int] = mapped_column(
        ForeignKey("definitions.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    content: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    content_hash: Mapped[str] = mapped_column(String(64))
    """sha256 of the content as canonical JSON (sorted keys, no spaces)."""
    author: Mapped[str] = mapped_column(Text)
    """The name of the key that wrote it."""
    author_key: Mapped[str] = mapped_column(String(16))
    """The prefix of the key that wrote it."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Binding(Base):
    """Command type -> definition, at instance scope (tenant_id None) or tenant scope.

    A scope binds a definition to a type once. Commands start the bindings of their type in
    order: the instance's, then the tenant's, each by ``position`` and then ``id``.
    """

    __tablename__ = "bindings"
    __table_args__ = _scoped_unique("bindings", "command_type", "definition_name")

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    command_type: Mapped[str] = mapped_column(String(128), index=True)
    definition_name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int | None] = mapped_column(Integer)
    """A pinned version; None runs the definition's current version."""
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CommandRecord(Base):
    """The command ledger: a command id is accepted once per tenant."""

    __tablename__ = "commands"
    __table_args__ = (UniqueConstraint("tenant_id", "command_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    command_id: Mapped[str] = mapped_column(String(256))
    type: Mapped[str] = mapped_column(String(128))
    payload_hash: Mapped[str] = mapped_column(String(64))
    workflow_ids: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    runs: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONDocument, default=list, server_default=text("'[]'")
    )
    """What the command started, in order: one ``starter.api.commands.CommandRun`` each."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertRule(Base):
    """A tenant's alert rule: when to POST a signed alert, and where (``starter.alerts``)."""

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    """``run_failed``, ``step_parked`` or ``failure_rate``."""
    definition_name: Mapped[str | None] = mapped_column(String(64))
    """Only runs of this definition; None for every definition."""
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(128))
    """The name of the signing secret in the alert secrets file (never its value)."""
    threshold: Mapped[float | None] = mapped_column(Float)
    """failure_rate: the percentage of failed closed runs that fires the rule."""
    window_seconds: Mapped[int | None] = mapped_column(Integer)
    min_runs: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertDelivery(Base):
    """One alert of a rule, delivered once: ``(rule_id, event_key)`` is unique, so every
    starter process that sees the same event inserts it once and only the inserter sends it."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (UniqueConstraint("rule_id", "event_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    event_key: Mapped[str] = mapped_column(String(512))
    idempotency_key: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    status: Mapped[str] = mapped_column(String(16))
    """``pending``, ``delivered`` or ``failed``."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer)
    """The receiver's last HTTP status; None when it never answered."""
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """A pending delivery is being sent by one starter until then; after it, any starter's
    notifier takes it over (so a starter that stops mid-retry does not lose it)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
