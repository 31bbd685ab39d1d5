"""Initial schema: tenants, keys, definitions and versions, bindings, the command ledger.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from starter.db.types import JSONDocument, UTCDateTime

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_ROWS = sa.text("tenant_id IS NOT NULL")
INSTANCE_ROWS = sa.text("tenant_id IS NULL")


def _tenant_fk() -> sa.Column[str]:
    return sa.Column("tenant_id", sa.String(63), sa.ForeignKey("tenants.id", ondelete="CASCADE"))


def upgrade() -> None:
    """Create every table."""
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        _tenant_fk(),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False, unique=True),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])
    op.create_table(
        "definitions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _tenant_fk(),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("is_template", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    _scoped_unique("definitions", "name")
    op.create_table(
        "definition_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "definition_id",
            sa.Integer(),
            sa.ForeignKey("definitions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content", JSONDocument, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("author", sa.Text(), nullable=False),
        sa.Column("author_key", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("definition_id", "version"),
    )
    op.create_index(
        "ix_definition_versions_definition_id", "definition_versions", ["definition_id"]
    )
    op.create_table(
        "bindings",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _tenant_fk(),
        sa.Column("command_type", sa.String(128), nullable=False),
        sa.Column("definition_name", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_bindings_tenant_id", "bindings", ["tenant_id"])
    op.create_index("ix_bindings_command_type", "bindings", ["command_type"])
    op.create_table(
        "commands",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "tenant_id",
            sa.String(63),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("command_id", sa.String(256), nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("workflow_ids", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "command_id"),
    )


def _scoped_unique(table: str, *columns: str) -> None:
    """Unique per tenant, and unique among instance rows (NULL tenant)."""
    suffix = "_".join(columns)
    op.create_index(
        f"uq_{table}_tenant_{suffix}",
        table,
        ["tenant_id", *columns],
        unique=True,
        sqlite_where=TENANT_ROWS,
        postgresql_where=TENANT_ROWS,
    )
    op.create_index(
        f"uq_{table}_instance_{suffix}",
        table,
        list(columns),
        unique=True,
        sqlite_where=INSTANCE_ROWS,
        postgresql_where=INSTANCE_ROWS,
    )


def downgrade() -> None:
    """Drop every table."""
    for table in ("commands", "bindings", "definition_versions", "definitions", "api_keys"):
        op.drop_table(table)
    op.drop_table("tenants")
