"""Linear retry backoff, which Temporal's RetryPolicy cannot express.

For a step with ``retry.backoff: linear`` the interpreter puts a
:class:`~workflows.types.LinearBackoff` in the step's :class:`~workflows.types.StepInput`. When
such an activity fails retryably, :class:`LinearBackoffInterceptor` re-raises the failure as an
``ApplicationError`` with ``next_retry_delay`` set to the linear delay for this attempt, which
Temporal uses instead of the policy's own interval. The error keeps its message, details and
type (a plain exception's type is its class name, as Temporal would report it, so
``retry.non_retryable: [ValueError]`` still applies). Non-retryable errors pass unchanged, and
a delay the error asks for itself (an HTTP ``Retry-After``) is kept when it is longer.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from workflows.types import LinearBackoff, StepInput


class LinearBackoffInterceptor(Interceptor):
    """Worker interceptor: ``Worker(..., interceptors=[LinearBackoffInterceptor()])``."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Wrap every activity; those without linear backoff are left as they are."""
        return LinearBackoffInbound(next)


class LinearBackoffInbound(ActivityInboundInterceptor):
    """Sets ``next_retry_delay`` on the retryable failures of linear-backoff steps."""

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        """Run the activity, re-raising a retryable failure with the linear delay."""
        try:
            return await self.next.execute_activity(input)
        except Exception as exc:
            backoff = _linear_backoff(input.args)
            if backoff is None:
                raise
            delayed = with_linear_delay(exc, backoff, activity.info().attempt)
            if delayed is exc:
                raise
            # A re-raised ApplicationError keeps its own cause rather than repeating itself.
            raise delayed from exc.__cause__ if isinstance(exc, ApplicationError) else exc


def with_linear_delay(exc: Exception, backoff: LinearBackoff, attempt: int) -> Exception:
    """The error to raise instead of ``exc`` after attempt ``attempt`` failed.

    Returns:
        ``exc`` itself when it must not be retried (or is a Temporal error other than an
        ``ApplicationError``, such as a cancellation); otherwise an ``ApplicationError`` like
        it whose ``next_retry_delay`` is the linear delay (or the error's own, if longer).
    """
    delay = backoff.delay(attempt)
    if isinstance(exc, ApplicationError):
        if exc.non_retryable:
            return exc
        return ApplicationError(
            exc.message,
            *exc.details,
            type=exc.type,
            next_retry_delay=_longest(delay, exc.next_retry_delay),
            category=exc.category,
        )
    if isinstance(exc, FailureError):
        return exc
    return ApplicationError(str(exc), type=type(exc).__name__, next_retry_delay=delay)


def _linear_backoff(args: Any) -> LinearBackoff | None:
    first = args[0] if args else None
    return first.linear_backoff if isinstance(first, StepInput) else None


def _longest(delay: timedelta, other: timedelta | None) -> timedelta:
    return max(delay, other) if other is not None else delay
