"""Alembic's environment: migrates the connection :func:`starter.migrations.upgrade` passes,
or, from the ``alembic`` command line, the database named by ``-x url=...`` or
``DAGFLOW_DATABASE_URL``."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from starter.db.engine import create_engine
from starter.db.models import Base
from starter.settings import ServiceSettings

target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    """Run the migrations on one connection, in one transaction."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations(url: str) -> None:
    """Open the database at ``url`` and migrate it."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


def main() -> None:
    """Migrate the given connection, or open one from the command line's URL."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or ServiceSettings().database_url
    asyncio.run(run_async_migrations(url))


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
main()
