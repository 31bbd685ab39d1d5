"""Builds the Temporal Worker that runs DagRun, DagCommand and the step activities."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Interceptor, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from worker.interceptors import RunDetailsInterceptor, StepAttemptInterceptor
from workflows.command import DagCommand
from workflows.dag_run import DagForEachBatch, DagRun

PASSTHROUGH = (
    "cel",
    "jsonschema",
    "jsonschema_specifications",
    "referencing",
    "rpds",
    "pydantic",
    "pydantic_core",
    "yaml",
    "workflows",
)
"""Modules the workflow sandbox shares instead of re-importing: deterministic, and `cel`'s
native core must be loaded once."""


def sandbox_runner() -> SandboxedWorkflowRunner:
    """The workflow sandbox, with dagflow's deterministic modules passed through."""
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    return SandboxedWorkflowRunner(restrictions=restrictions)


def dagflow_interceptors() -> list[Interceptor]:
    """The interceptors every dagflow worker runs (see :mod:`worker.interceptors`)."""
    return [StepAttemptInterceptor(), RunDetailsInterceptor()]


def build_worker(
    client: Client,
    *,
    task_queue: str,
    activities: Sequence[Callable[..., Any]],
    interceptors: Sequence[Interceptor] = (),
    max_concurrent_activities: int = 200,
    max_cached_workflows: int = 1000,
    shutdown_grace: timedelta = timedelta(seconds=10),
    workflows: bool = True,
) -> Worker:
    """A Worker for the interpreter and the given step activities.

    Args:
        client: A client made by :func:`worker.client.connect`.
        task_queue: The queue to poll.
        activities: Step activities (built-in and plugins), each named after its kind.
        interceptors: Extra interceptors, run inside dagflow's own.
        max_concurrent_activities: Activities this worker runs at once.
        max_cached_workflows: Runs kept in memory between workflow tasks (Temporal's sticky
            cache; a parked run costs about 85 KB there, see docs/benchmarks.md); 0 keeps none.
        shutdown_grace: How long running activities get when the worker shuts down.
        workflows: Whether this worker also runs the workflows (DagRun, DagForEachBatch,
            DagCommand); False for activity-only workers serving a capability task queue.
    """
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[DagRun, DagForEachBatch, DagCommand] if workflows else [],
        activities=list(activities),
        interceptors=[*dagflow_interceptors(), *interceptors],
        workflow_runner=sandbox_runner(),
        max_concurrent_activities=max_concurrent_activities,
        max_cached_workflows=max_cached_workflows,
        graceful_shutdown_timeout=shutdown_grace,
    )
