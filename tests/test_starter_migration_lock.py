"""Several starters may upgrade one PostgreSQL database at once: one migrates, the rest wait
and find it at head (a transaction-scoped advisory lock)."""

from __future__ import annotations

import asyncio

import pytest

from starter.migrations import current_revision, head_revision, upgrade
from tests.starter import Databases


@pytest.fixture
def postgresql(postgres_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Databases:
    return Databases("postgresql", tmp_path_factory.mktemp("pg"), postgres_uri)


async def test_concurrent_upgrades_of_one_database_all_succeed(postgresql: Databases) -> None:
    url = await postgresql.empty()
    # without the lock, concurrent migrations block each other for good: fail, don't hang
    upgrades = asyncio.gather(*(upgrade(url) for _ in range(4)), return_exceptions=True)
    results = await asyncio.wait_for(upgrades, 60)
    assert results == [head_revision()] * 4
    assert await current_revision(url) == head_revision()
