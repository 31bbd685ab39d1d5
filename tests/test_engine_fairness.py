"""Tenant fairness: a run's activities, child runs and batches carry its tenant as Temporal
fairness key, and on a server with fairness on, a tenant that floods the queue does not make
another tenant wait for its whole backlog."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from starter.devserver import FAIRNESS_FLAGS, temporal_binary
from starter.launch import start_run
from tests.engine import dag_worker, eventually, progress, start_dag
from worker.client import DATA_CONVERTER
from worker.worker import build_worker
from workflows import search_attributes
from workflows.definition import Definition
from workflows.scheduling import tenant_priority
from workflows.types import StepInput, StepStatus

FAIRNESS = [
    *FAIRNESS_FLAGS,  # what `dagflow dev` gives its server
    # fairness holds within a task queue partition: one partition makes the order exact
    "--dynamic-config-value",
    "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value",
    "matching.numTaskqueueWritePartitions=1",
]


@activity.defn(name="echo")
async def echo(inp: StepInput) -> Any:
    return inp.with_.get("value")


async def priorities(client: Client, workflow_id: str) -> dict[str, list[str]]:
    """The fairness keys in a run's history, by the kind of event that carries them."""
    found: dict[str, list[str]] = {}
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            key = event.activity_task_scheduled_event_attributes.priority.fairness_key
            found.setdefault("activity", []).append(key)
        elif event.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            attrs = event.start_child_workflow_execution_initiated_event_attributes
            found.setdefault("child", []).append(attrs.priority.fairness_key)
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            key = event.workflow_execution_started_event_attributes.priority.fairness_key
            found.setdefault("started", []).append(key)
    return found


async def test_activities_and_batches_carry_the_tenant_as_fairness_key(client: Client) -> None:
    definition = {
        "name": "fair-keys",
        "steps": {
            "one": {"uses": "echo", "with": {"value": 1}},
            "many": {"uses": "echo", "for_each": "${{ [1, 2, 3] }}", "with": {"value": "x"}},
        },
    }
    async with dag_worker(client, [echo]) as worker:
        # started without a priority, as `temporal workflow start` would: the run sets the key
        handle = await start_dag(client, worker, definition, tenant="globex", batch_size=2)
        await handle.result()
    run = await priorities(client, handle.id)
    assert run["started"] == [""]
    assert run["activity"] == ["globex"]  # `one`; the items run in the two batches
    assert run["child"] == ["globex", "globex"]
    for batch in (f"{handle.id}/many[0-1]#1", f"{handle.id}/many[2-2]#1"):
        keys = await priorities(client, batch)
        assert keys["started"] == ["globex"]
        assert keys["activity"] and set(keys["activity"]) == {"globex"}


async def test_runs_started_by_dagflow_carry_the_tenant_from_the_start(client: Client) -> None:
    definition = Definition.model_validate(
        {"name": "fair-start", "steps": {"one": {"uses": "echo", "with": {"value": 1}}}}
    )
    async with dag_worker(client, [echo]) as worker:
        handle, _ = await start_run(
            client, definition, task_queue=worker.task_queue, tenant="initech"
        )
        await handle.result()
    assert await priorities(client, handle.id) == {"started": ["initech"], "activity": ["initech"]}


def test_a_long_tenant_name_is_cut_to_64_bytes_at_a_character_boundary() -> None:
    assert tenant_priority("acme").fairness_key == "acme"
    key = tenant_priority("é" * 40).fairness_key
    assert key == "é" * 32
    assert key is not None and len(key.encode()) == 64


@pytest.fixture(scope="module")
async def fair_client() -> AsyncIterator[Client]:
    """A dev server of its own, with task queue fairness on."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=search_attributes.ALL,
        data_converter=DATA_CONVERTER,
        dev_server_extra_args=FAIRNESS,
    )
    try:
        yield env.client
    finally:
        await env.shutdown()


async def test_a_flooding_tenant_does_not_starve_another(fair_client: Client) -> None:
    """The flood's 80 steps and then the small tenant's 2 are all queued before any activity
    worker polls; then one worker with 2 slots takes them. First in, first out, the small
    tenant's steps would start last; dispatched round robin by tenant, they start among the
    first."""
    started: list[str] = []

    @activity.defn(name="slow")
    async def slow(inp: StepInput) -> Any:
        started.append(inp.tenant)
        await asyncio.sleep(0.02)
        return inp.with_.get("value")

    steps_queue = f"steps-{uuid.uuid4()}"
    definition = Definition.model_validate(
        {
            "name": "fair-flood",
            "steps": {"work": {"uses": "slow", "with": {"value": 1}, "task_queue": steps_queue}},
            "output": "${{ steps.work.output }}",
        }
    )

    async def start(tenant: str, count: int) -> list[WorkflowHandle[Any, Any]]:
        handles = []
        for _ in range(count):
            handle, _ = await start_run(
                fair_client, definition, task_queue=runs.task_queue, tenant=tenant
            )
            handles.append(handle)
        return handles

    async def queued(handles: list[WorkflowHandle[Any, Any]]) -> bool:
        """Whether every run's step is scheduled (its activity is in the queue)."""
        states = await asyncio.gather(*(progress(h) for h in handles))
        return all(p.steps[0].status == StepStatus.RUNNING for p in states)

    flood_runs = 80
    async with dag_worker(fair_client) as runs:
        flood = await start("flood", flood_runs)
        await eventually(lambda: queued(flood), within=60, interval=0.2)
        small = await start("small", 2)
        await eventually(lambda: queued(small), within=60, interval=0.2)
        steps = build_worker(
            fair_client,
            task_queue=steps_queue,
            activities=[slow],
            max_concurrent_activities=2,
            workflows=False,
            shutdown_grace=timedelta(seconds=1),
        )
        async with steps, asyncio.timeout(120):
            assert [await h.result() for h in small + flood] == [1] * (flood_runs + 2)
    last_small = max(i for i, tenant in enumerate(started) if tenant == "small")
    assert last_small < flood_runs // 2, started
