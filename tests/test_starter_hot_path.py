"""The command path's shortcuts keep every semantic: parsed versions are cached, but what can
change (the current version, active, input schema of a new version) is read every time; API
keys are cached, but a revocation takes effect at once in the service that revoked them; the
database runner commits, rolls back and reports errors as a transaction does."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from starter.auth import Principal
from starter.cache import KeyCache, VersionCache
from starter.db.engine import create_engine
from starter.db.runner import DbRunner
from starter.errors import Conflict, Invalid, Unauthorized
from tests.metrics import scrape, value
from tests.starter import Databases, Starter, running, service_settings
from workflows.definition import Definition

BOUND = "order.created"


def ship(marker: str, **extra: Any) -> dict[str, Any]:
    """A one-step definition ``ship``; ``marker`` makes each version's content differ."""
    step = {"uses": "transform", "with": {"value": marker}}
    return {"name": "ship", "steps": {"a": step}, **extra}


async def test_commands_run_the_current_version_through_every_change(starter: Starter) -> None:
    acme = await starter.tenant()
    await acme.definitions.create(ship("v1"))
    await acme.bindings.create(BOUND, "ship")

    async def version(command_id: str) -> int:
        [run] = (await acme.commands.send(BOUND, command_id, {})).runs
        return run.version

    assert await version("a") == 1
    await acme.definitions.update("ship", ship("v2"))
    assert await version("b") == 2
    await acme.definitions.rollback("ship", 1)
    assert await version("c") == 1
    await acme.definitions.deactivate("ship")
    with pytest.raises(Conflict, match="deactivated"):
        await acme.commands.send(BOUND, "d", {})
    await acme.definitions.activate("ship")
    assert await version("e") == 1
    schema = {"type": "object", "required": ["n"]}
    await acme.definitions.update("ship", ship("v3", input=schema))
    with pytest.raises(Invalid) as error:  # the new version's schema applies at once
        await acme.commands.send(BOUND, "f", {})
    assert [e.path for e in error.value.errors] == ["payload"]
    [run] = (await acme.commands.send(BOUND, "h", {"n": 1})).runs
    assert run.version == 3


async def test_a_revocation_through_another_service_is_bounded_by_its_key_cache(
    databases: Databases, temporal_address: str
) -> None:
    """A second service process on the same database trusts a key it looked up for up to
    ``key_cache_seconds``; with 0 it reads the key every time."""
    url = await databases.fresh()
    first = service_settings(url, temporal_address)
    trusting = service_settings(url, temporal_address, key_cache_seconds=3600)
    checking = service_settings(url, temporal_address, key_cache_seconds=0)
    async with running(first) as a, running(trusting) as b, running(checking) as c:
        admin = a.instance().instance
        await admin.create_tenant("acme")
        new = await admin.create_key("ci", tenant="acme")
        for service in (a, b, c):
            await service.client(new.key).definitions.list()
        await admin.revoke_key(new.id, tenant="acme")
        with pytest.raises(Unauthorized, match="revoked"):
            await a.client(new.key).definitions.list()  # the revoking service: at once
        with pytest.raises(Unauthorized, match="revoked"):
            await c.client(new.key).definitions.list()
        assert (await b.client(new.key).definitions.list()).items == []  # within the bound


async def test_commands_report_the_phases_of_their_cost(starter: Starter) -> None:
    acme = await starter.tenant()
    await acme.definitions.create(ship("v1"))
    await acme.bindings.create(BOUND, "ship")
    await acme.commands.send(BOUND, "a", {})
    text_ = await scrape(f"{starter.base_url}/metrics")
    count = "dagflow_http_request_phase_seconds_count"
    route = {"method": "POST", "route": "/v1/commands"}
    for name in ("authenticate", "ledger_lookup", "bindings", "definitions", "temporal_start"):
        assert value(text_, count, phase=name, **route) == 1, name
    assert value(text_, count, phase="ledger_write", **route) == 1
    assert value(text_, count, phase="authenticate", method="POST", route="/v1/bindings") == 1


# --- the caches and the runner on their own ------------------------------------------------


def test_the_version_cache_drops_the_least_recently_used() -> None:
    cache = VersionCache(size=2)
    one, two, three = (Definition.model_validate(ship(f"v{n}")) for n in (1, 2, 3))
    cache.put(1, 1, one)
    cache.put(1, 2, two)
    assert cache.get(1, 1) is one  # now the most recent
    cache.put(2, 1, three)
    assert (cache.get(1, 1), cache.get(1, 2), cache.get(2, 1)) == (one, None, three)
    assert len(cache) == 2


def test_a_key_lookup_that_raced_a_revocation_is_not_kept() -> None:
    cache = KeyCache(ttl=60)
    principal = Principal("acme", "k1", "ci", "abcdefgh")
    before = cache.generation
    cache.invalidate()  # a revocation committed while the lookup read the database
    cache.put("digest", principal, before)
    assert cache.get("digest") is None
    cache.put("digest", principal, cache.generation)
    assert cache.get("digest") == principal
    cache.invalidate()
    assert cache.get("digest") is None


async def test_a_key_cache_entry_expires() -> None:
    cache = KeyCache(ttl=0.05)
    principal = Principal("acme", "k1", "ci", "abcdefgh")
    cache.put("digest", principal, cache.generation)
    assert cache.get("digest") == principal
    await asyncio.sleep(0.1)
    assert cache.get("digest") is None
    off = KeyCache(ttl=0)
    off.put("digest", principal, off.generation)
    assert off.get("digest") is None


async def test_the_runner_commits_rolls_back_and_reports_conflicts(databases: Databases) -> None:
    url = await databases.fresh()
    engine = create_engine(url)
    runner = DbRunner(engine)
    assert runner.threaded == (databases.kind == "sqlite")
    insert = text(
        "INSERT INTO tenants (id, name, created_at) VALUES (:id, :name, CURRENT_TIMESTAMP)"
    )
    count = text("SELECT count(*) FROM tenants")

    def add(connection: Connection, *ids: str) -> None:
        for tenant in ids:
            connection.execute(insert, {"id": tenant, "name": tenant})

    def fail_after_adding(connection: Connection) -> None:
        add(connection, "b")
        raise ValueError("no")

    try:
        await runner.write(lambda c: add(c, "a"))
        with pytest.raises(ValueError, match="no"):
            await runner.write(fail_after_adding)
        with pytest.raises(IntegrityError):
            await runner.write(lambda c: add(c, "c", "a"))
        assert await runner.read(lambda c: c.execute(count).scalar()) == 1
        many = [runner.write(lambda c, n=n: add(c, f"t{n}")) for n in range(20)]
        await asyncio.gather(*many)
        assert await runner.read(lambda c: c.execute(count).scalar()) == 21
    finally:
        runner.close()
        await engine.dispose()


async def test_an_in_memory_sqlite_database_runs_on_the_event_loop(tmp_path: Path) -> None:
    engine = create_engine("sqlite+aiosqlite:///:memory:")
    runner = DbRunner(engine)
    try:
        assert not runner.threaded
        assert await runner.read(lambda c: c.execute(text("SELECT 1")).scalar()) == 1
    finally:
        runner.close()
        await engine.dispose()
    file = DbRunner(create_engine(f"sqlite+aiosqlite:///{tmp_path / uuid.uuid4().hex}.db"))
    assert file.threaded
    file.close()
