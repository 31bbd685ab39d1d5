"""Worker interceptors: step activities report the attempt that produced their result."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from workflows.types import StepInput, StepResult


class StepAttemptInterceptor(Interceptor):
    """Wraps every step activity's result in :class:`StepResult` and tags failures with the
    attempt number, so the ``progress`` query can show how many attempts a step took."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _StepAttemptInbound(next)


class _StepAttemptInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        if not (input.args and isinstance(input.args[0], StepInput)):
            return await super().execute_activity(input)
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
