"""Worker interceptors: step activities report the attempt that produced their result, and
each attempt is measured (:mod:`worker.metrics`); a run's current details are made when the
Web UI asks for them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    HandleQueryInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from worker.metrics import Outcome, record_attempt
from workflows.types import StepInput, StepResult


class StepAttemptInterceptor(Interceptor):
    """Wraps every step activity's result in :class:`StepResult` and tags failures with the
    attempt number, so the ``progress`` query can show how many attempts a step took; counts
    and times every attempt by kind, tenant and outcome."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _StepAttemptInbound(next)


METADATA_QUERY = "__temporal_workflow_metadata"
"""The SDK's built-in query that hands out a run's current details (the Web UI asks it)."""


class RunDetailsInterceptor(Interceptor):
    """Fills in the current details of a run whose workflow makes them on demand (a
    ``current_details()`` method, as DagRun has) when the metadata query asks for them, so
    the run does not rebuild them on every wake-up. Queries are read-only, so the answer is
    amended rather than ``workflow.set_current_details`` called."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _RunDetailsInbound


class _RunDetailsInbound(WorkflowInboundInterceptor):
    async def handle_query(self, input: HandleQueryInput) -> Any:
        answer = await super().handle_query(input)
        if input.query == METADATA_QUERY:
            details = getattr(workflow.instance(), "current_details", None)
            if details is not None:
                answer.current_details = details()
        return answer


class _StepAttemptInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        if not (input.args and isinstance(input.args[0], StepInput)):
            return await super().execute_activity(input)
        step = input.args[0]
        started = time.monotonic()
        outcome: Outcome = "failed"
        try:
            result = await self._attempt(input)
            outcome = "succeeded"
            return result
        except (asyncio.CancelledError, CancelledError):
            outcome = "cancelled"
            raise
        finally:
            record_attempt(step.kind, step.tenant, outcome, time.monotonic() - started)

    async def _attempt(self, input: ExecuteActivityInput) -> StepResult:
        attempt = activity.info().attempt
        try:
            output = await super().execute_activity(input)
        except (asyncio.CancelledError, CancelledError):
            raise
        except ApplicationError as e:
            raise ApplicationError(
                e.message,
                *e.details,
                {"attempt": attempt},
                type=e.type,
                non_retryable=e.non_retryable,
                next_retry_delay=e.next_retry_delay,
                category=e.category,
            ) from e
        except Exception as e:
            raise ApplicationError(str(e), {"attempt": attempt}, type=type(e).__name__) from e
        return StepResult(output=output, attempt=attempt)
