"""Bindings: a pinned version, one binding of a definition to a type per scope; the command
ledger keeps the runs each command started.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from starter.db.types import JSONDocument

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_ROWS = sa.text("tenant_id IS NOT NULL")
INSTANCE_ROWS = sa.text("tenant_id IS NULL")
COLUMNS = ["command_type", "definition_name"]


def upgrade() -> None:
    """Add ``bindings.version``, the per-scope unique indexes, and ``commands.runs``."""
    op.add_column("bindings", sa.Column("version", sa.Integer(), nullable=True))
    op.create_index(
        "uq_bindings_tenant_command_type_definition_name",
        "bindings",
        ["tenant_id", *COLUMNS],
        unique=True,
        sqlite_where=TENANT_ROWS,
        postgresql_where=TENANT_ROWS,
    )
    op.create_index(
        "uq_bindings_instance_command_type_definition_name",
        "bindings",
        COLUMNS,
        unique=True,
        sqlite_where=INSTANCE_ROWS,
        postgresql_where=INSTANCE_ROWS,
    )
    op.add_column(
        "commands",
        sa.Column("runs", JSONDocument, nullable=False, server_default=sa.text("'[]'")),
    )


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    with op.batch_alter_table("commands") as batch:
        batch.drop_column("runs")
    op.drop_index("uq_bindings_instance_command_type_definition_name", "bindings")
    op.drop_index("uq_bindings_tenant_command_type_definition_name", "bindings")
    with op.batch_alter_table("bindings") as batch:
        batch.drop_column("version")
