"""Draining a worker on SIGTERM: count the activities running, and hand back to Temporal the
ones the worker had to cancel, as retryable failures, so another worker runs them at once.

When a worker shuts down, the Temporal SDK stops polling and gives running activities the
worker's ``graceful_shutdown_timeout``; then it cancels those still running (an
``asyncio.CancelledError`` inside the activity: no heartbeat is needed, the cancellation comes
from the worker itself). :class:`DrainTracker` turns such a cancellation into an
``ApplicationError`` of type ``WorkerShutdown``, which Temporal retries under the step's retry
policy, so the attempt's failure says why it ended. (Temporal retries the SDK's own report of
a shutdown cancellation as well; it just does not say so as plainly.)
:meth:`DrainTracker.cancel_all` cancels them before the grace ends (a second SIGTERM).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

WORKER_SHUTDOWN = "WorkerShutdown"
"""The error type of an attempt cut short by its worker shutting down (retryable)."""


@dataclass
class DrainCounts:
    """What happened to the activities that were running when the drain began."""

    running: int = 0
    finished: int = 0
    cancelled: int = 0


@dataclass
class DrainTracker(Interceptor):
    """Worker interceptor that knows the running activities and reports how a drain went.

    Put it last in the worker's interceptors, so it sees the activity's own cancellation.
    """

    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    draining: DrainCounts | None = None
    forced: bool = False

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Wrap every activity."""
        return _DrainInbound(next, self)

    def begin(self) -> int:
        """Start counting the drain; returns how many activities are running."""
        self.draining = DrainCounts(running=len(self.tasks))
        return self.draining.running

    def cancel_all(self) -> int:
        """Cancel every running activity now; returns how many."""
        self.forced = True
        for task in self.tasks:
            task.cancel()
        return len(self.tasks)


class _DrainInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, tracker: DrainTracker) -> None:
        super().__init__(next)
        self._tracker = tracker

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        tracker = self._tracker
        task = asyncio.current_task()
        assert task is not None
        tracker.tasks.add(task)
        cut = False
        try:
            return await super().execute_activity(input)
        except (asyncio.CancelledError, CancelledError):
            if not (tracker.forced or _worker_shutdown()):
                raise
            cut = True
            raise ApplicationError(
                f"the worker shut down before attempt {activity.info().attempt} finished",
                type=WORKER_SHUTDOWN,
            ) from None
        finally:
            tracker.tasks.discard(task)
            if tracker.draining is not None:
                if cut:
                    tracker.draining.cancelled += 1
                else:
                    tracker.draining.finished += 1


def _worker_shutdown() -> bool:
    details = activity.cancellation_details()
    return details is not None and details.worker_shutdown
