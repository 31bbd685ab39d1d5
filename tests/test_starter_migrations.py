"""The schema: Alembic migrations apply on SQLite and PostgreSQL and match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from starter.db.engine import create_engine
from starter.db.models import Base
from starter.migrations import current_revision, head_revision, upgrade
from tests.starter import Databases


async def test_migrations_create_every_table_and_match_the_models(databases: Databases) -> None:
    url = await databases.empty()
    assert await current_revision(url) is None

    assert await upgrade(url) == head_revision()
    assert await upgrade(url) == head_revision()  # a second run changes nothing

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()
    assert differences == []
