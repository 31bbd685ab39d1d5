"""Linear retry backoff: the delay rule, and a real run whose retries wait linearly."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError

from activities.interceptor import LinearBackoffInterceptor, with_linear_delay
from activities.registry import load_plugins
from tests.engine import dag_worker, progress, start_dag
from workflows.types import LinearBackoff

BACKOFF = LinearBackoff(initial=timedelta(seconds=1), increment=timedelta(seconds=2))


def test_delay_grows_linearly_and_stops_at_the_maximum() -> None:
    assert [BACKOFF.delay(n).total_seconds() for n in (1, 2, 3)] == [1, 3, 5]
    capped = BACKOFF.model_copy(update={"maximum": timedelta(seconds=4)})
    assert capped.delay(3) == timedelta(seconds=4)


def test_retryable_application_error_keeps_everything_but_gains_the_delay() -> None:
    error = ApplicationError("GET x answered 502", {"status": 502}, type="HttpError")
    delayed = with_linear_delay(error, BACKOFF, attempt=3)
    assert isinstance(delayed, ApplicationError)
    assert (delayed.message, delayed.type, delayed.details) == (
        "GET x answered 502",
        "HttpError",
        ({"status": 502},),
    )
    assert not delayed.non_retryable
    assert delayed.next_retry_delay == timedelta(seconds=5)


@pytest.mark.parametrize(("asked", "expected"), [(30, 30), (0.5, 1)])
def test_a_longer_delay_the_error_asks_for_is_kept(asked: float, expected: float) -> None:
    error = ApplicationError("429", type="HttpError", next_retry_delay=timedelta(seconds=asked))
    delayed = with_linear_delay(error, BACKOFF, attempt=1)
    assert isinstance(delayed, ApplicationError)
    assert delayed.next_retry_delay == timedelta(seconds=expected)


def test_plain_exceptions_keep_their_class_name_as_type() -> None:
    delayed = with_linear_delay(ValueError("bad sku"), BACKOFF, attempt=2)
    assert isinstance(delayed, ApplicationError)
    assert (delayed.type, delayed.message) == ("ValueError", "bad sku")
    assert delayed.next_retry_delay == timedelta(seconds=3)


@pytest.mark.parametrize(
    "error",
    [ApplicationError("gone", type="HttpError", non_retryable=True), CancelledError("stop")],
)
def test_final_errors_and_cancellation_pass_unchanged(error: Exception) -> None:
    assert with_linear_delay(error, BACKOFF, attempt=1) is error


def _linear_step(**retry: object) -> dict[str, object]:
    return {
        "name": "linear",
        "steps": {
            "s": {
                "uses": "flaky",
                "with": {"failures": 2},
                "retry": {
                    "max_attempts": 4,
                    "backoff": "linear",
                    "initial_interval": "100ms",
                    "increment": "300ms",
                    **retry,
                },
            }
        },
        "output": "${{ steps.s.output }}",
    }


async def test_a_run_retries_with_linear_delays(client: Client) -> None:
    flaky = load_plugins()["flaky"]
    async with dag_worker(client, [flaky], [LinearBackoffInterceptor()]) as worker:
        handle = await start_dag(client, worker, _linear_step())
        output = await handle.result()
    assert output["attempt"] == 3
    # Attempt 2's failure asked Temporal to wait 100ms + 300ms (the RetryPolicy alone: 100ms).
    assert await last_asked_delay(handle) == timedelta(milliseconds=400)
    assert output["waited"] >= 0.5


async def last_asked_delay(handle: WorkflowHandle[Any, Any]) -> timedelta | None:
    """``next_retry_delay`` of the failure before the last attempt (history keeps only that)."""
    delay = None
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_started_event_attributes"):
            failure = event.activity_task_started_event_attributes.last_failure
            while not failure.application_failure_info.HasField("next_retry_delay"):
                if not failure.HasField("cause"):
                    return None
                failure = failure.cause
            delay = failure.application_failure_info.next_retry_delay.ToTimedelta()
    return delay


async def test_non_retryable_plain_exception_stops_a_linear_step(client: Client) -> None:
    flaky = load_plugins()["flaky"]
    async with dag_worker(client, [flaky], [LinearBackoffInterceptor()]) as worker:
        handle = await start_dag(client, worker, _linear_step(non_retryable=["FlakyError"]))
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        (step,) = (await progress(handle)).steps
    assert step.attempts == 1
    assert "FlakyError" in (step.error or "") or "failed on purpose" in (step.error or "")
