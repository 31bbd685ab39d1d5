"""Walk a run's histories: its continue-as-new chain and every child workflow it started."""

from __future__ import annotations

from collections.abc import AsyncIterator

from temporalio.client import Client, WorkflowHistory


async def run_histories(
    client: Client, workflow_id: str, run_id: str
) -> AsyncIterator[tuple[str, str, WorkflowHistory]]:
    """``(workflow_id, run_id, history)`` of each run of the chain starting at ``run_id`` and of
    every child workflow any of them started, fetched by ``client``."""
    todo = [(workflow_id, run_id)]
    while todo:
        wid, rid = todo.pop()
        history = await client.get_workflow_handle(wid, run_id=rid).fetch_history()
        yield wid, rid, history
        for event in history.events:
            if event.HasField("workflow_execution_continued_as_new_event_attributes"):
                attrs = event.workflow_execution_continued_as_new_event_attributes
                todo.append((wid, attrs.new_execution_run_id))
            if event.HasField("child_workflow_execution_started_event_attributes"):
                child = event.child_workflow_execution_started_event_attributes.workflow_execution
                todo.append((child.workflow_id, child.run_id))


async def history_lengths(client: Client, workflow_id: str, run_id: str) -> dict[str, int]:
    """Events in each run of the chain starting at ``run_id`` and in every child it started,
    keyed ``workflow_id@run_id``."""
    return {
        f"{wid}@{rid}": len(history.events)
        async for wid, rid, history in run_histories(client, workflow_id, run_id)
    }
