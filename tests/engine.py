"""Helpers for engine tests: run a definition on a fresh task queue with its own worker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Interceptor, Worker

from worker.worker import build_worker
from workflows.definition import Definition
from workflows.search_attributes import run_attributes
from workflows.types import WORKFLOW_TYPE, DagRunInput, Progress


@asynccontextmanager
async def dag_worker(
    client: Client,
    activities: Sequence[Callable[..., Any]] = (),
    interceptors: Sequence[Interceptor] = (),
    task_queue: str | None = None,
) -> AsyncIterator[Worker]:
    """A running worker on a fresh task queue (``worker.task_queue``)."""
    worker = build_worker(
        client,
        task_queue=task_queue or f"tq-{uuid.uuid4()}",
        activities=activities,
        interceptors=interceptors,
        shutdown_grace=timedelta(seconds=1),
    )
    async with worker:
        yield worker


async def start_dag(
    client: Client,
    worker: Worker,
    definition: dict[str, Any] | Definition,
    input: Any = None,
    *,
    tenant: str = "acme",
    library: dict[str, Definition] | None = None,
    **options: Any,
) -> WorkflowHandle[Any, Any]:
    """Start a DagRun of ``definition`` on ``worker``'s task queue."""
    defn = (
        definition if isinstance(definition, Definition) else Definition.model_validate(definition)
    )
    return await client.start_workflow(
        WORKFLOW_TYPE,
        DagRunInput(
            definition=defn, input=input, tenant=tenant, version=1, library=library or {}, **options
        ),
        id=f"{tenant}/{defn.name}/{uuid.uuid4()}",
        task_queue=worker.task_queue,
        search_attributes=run_attributes(tenant, defn.name, 1, options.get("command")),
    )


async def progress(handle: WorkflowHandle[Any, Any]) -> Progress:
    """The run's ``progress`` query."""
    return await handle.query("progress", result_type=Progress)


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 10.0, interval: float = 0.05
) -> None:
    """Wait until ``check()`` is true (instead of sleeping), or fail after ``within`` s."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


def chain_definition(n: int, name: str = "long-chain") -> dict[str, Any]:
    """s0 -> ... -> s(n-1) of `noop` steps, each passing on the one before's output plus one;
    the output is n - 1."""
    steps: dict[str, Any] = {"s0": {"uses": "noop", "with": {"value": 0}}}
    for i in range(1, n):
        steps[f"s{i}"] = {
            "uses": "noop",
            "needs": [f"s{i - 1}"],
            "with": {"value": f"${{{{ steps.s{i - 1}.output + 1 }}}}"},
        }
    return {"name": name, "steps": steps, "output": f"${{{{ steps.s{n - 1}.output }}}}"}
