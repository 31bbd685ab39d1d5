"""Starting runs of DagRun: workflow ids, search attributes, idempotent starts."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from workflows.definition import Definition
from workflows.scheduling import tenant_priority
from workflows.search_attributes import run_attributes
from workflows.types import WORKFLOW_TYPE, DagRunInput, StepRecord

RUN_TIMEOUT_MARGIN = timedelta(minutes=1)
"""Temporal's own execution timeout sits this far past the definition's ``timeout``: the run
enforces its timeout itself (so it can cancel steps and say so), Temporal's is the backstop."""


def workflow_id(tenant: str, definition: str, key: str | None = None) -> str:
    """``<tenant>/<definition>/<run key>``; a new random key when none is given."""
    return f"{tenant}/{definition}/{key or uuid.uuid4().hex[:12]}"


def workflow_key(workflow_id: str) -> str:
    """The run key part of a workflow id."""
    return workflow_id.rsplit("/", 1)[-1]


async def start_run(
    client: Client,
    definition: Definition,
    input: Any = None,
    *,
    task_queue: str,
    tenant: str = "default",
    version: int = 0,
    key: str | None = None,
    command: str | None = None,
    library: dict[str, Definition] | None = None,
    reuse: dict[str, StepRecord] | None = None,
    memo: dict[str, Any] | None = None,
) -> tuple[WorkflowHandle[Any, Any], bool]:
    """Start a run, or find the run already started under the same key.

    Args:
        reuse: A rerun's step records from the earlier run (succeeded steps keep outputs).
        memo: The workflow's memo (the starter keeps the request's hash there).

    Returns:
        The run's handle and whether this call started it (False: the key was used before,
        so the existing run is returned and nothing new starts).
    """
    wid = workflow_id(tenant, definition.name, key)
    arg = DagRunInput(
        definition=definition,
        input=input,
        tenant=tenant,
        version=version,
        command=command,
        library=library or {},
        reuse=reuse or {},
    )
    try:
        handle = await client.start_workflow(
            WORKFLOW_TYPE,
            arg,
            id=wid,
            task_queue=task_queue,
            execution_timeout=definition.timeout + RUN_TIMEOUT_MARGIN
            if definition.timeout
            else None,
            search_attributes=run_attributes(tenant, definition.name, version, command),
            static_summary=f"{tenant} · {definition.name} v{version}",
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            memo=memo,
            priority=tenant_priority(tenant),
        )
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle(wid), False
    return handle, True
