"""Alembic migrations of the service's database, and :func:`upgrade` to apply them.

``dagflow serve`` upgrades on start-up and ``dagflow db upgrade`` does only that. New
revisions go in ``versions/``; with a database at head, generate one with::

    alembic -x url=sqlite+aiosqlite:///.dagflow/dagflow.db \\
        -c starter/migrations/alembic.ini revision --autogenerate -m "what changed"
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from starter.db.engine import create_engine

HERE = Path(__file__).resolve().parent
MIGRATION_LOCK = 0x64616766  # "dagf"
"""The PostgreSQL advisory lock key that serialises migrations of one database."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, without an ini file; ``connection`` is the one to migrate."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


async def upgrade(database_url: str, revision: str = "head") -> str | None:
    """Migrate the database to ``revision`` (the latest by default).

    Args:
        database_url: An async SQLAlchemy URL (``sqlite+aiosqlite://...``,
            ``postgresql+asyncpg://...``). A SQLite file's folder is created.
        revision: The revision to reach.

    Returns:
        The revision the database is at afterwards.
    """
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # one migrator at a time: the others wait here, then find the schema at
                # head and change nothing (released when this transaction ends)
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
                )
            return await connection.run_sync(_upgrade, revision)
    finally:
        await engine.dispose()


async def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None before the first migration."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()


def head_revision() -> str | None:
    """The latest revision in ``versions/``."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade(connection: Connection, revision: str) -> str | None:
    command.upgrade(alembic_config(connection), revision)
    return MigrationContext.configure(connection).get_current_revision()
