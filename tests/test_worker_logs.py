"""A failed step attempt is one log line; a bug in a step keeps its traceback."""

from __future__ import annotations

import logging

import pytest
from temporalio.exceptions import ApplicationError

from worker.logs import ACTIVITY_LOGGER, StepFailureFilter, quiet_step_failures

DETAILS = {"activity_id": "book", "attempt": 2, "workflow_id": "acme/ledger-sync/k"}


def failure(error: BaseException) -> logging.LogRecord:
    """The record the SDK logs for a failed activity attempt."""
    try:
        raise error
    except BaseException as raised:
        record = logging.LogRecord(
            ACTIVITY_LOGGER, logging.WARNING, __file__, 1,
            "Completing activity as failed (%s)", (DETAILS,), (type(raised), raised, None),
        )  # fmt: skip
    record.__dict__["__temporal_error_identifier"] = "ActivityFailure"
    record.__dict__["temporal_activity"] = DETAILS
    return record


def wrapped(cause: BaseException) -> ApplicationError:
    """As StepAttemptInterceptor raises it: an ApplicationError from the step's error."""
    try:
        raise cause
    except ApplicationError as e:
        error = ApplicationError(e.message, type=e.type)
    except BaseException as e:
        error = ApplicationError(str(e), type=type(e).__name__)
    error.__cause__ = cause
    return error


def test_an_expected_step_failure_is_one_line() -> None:
    http = ApplicationError("POST http://ledger/entries answered 503", type="HttpError")
    record = failure(wrapped(http))
    assert StepFailureFilter().filter(record)
    assert record.exc_info is None
    assert record.getMessage() == (
        "step book attempt 2 of acme/ledger-sync/k failed: "
        "HttpError: POST http://ledger/entries answered 503"
    )


def test_a_bug_in_a_step_keeps_its_traceback() -> None:
    record = failure(wrapped(KeyError("sku")))
    assert StepFailureFilter().filter(record)
    assert record.exc_info is not None
    assert record.getMessage().startswith("Completing activity as failed")


def test_other_records_pass_untouched(caplog: pytest.LogCaptureFixture) -> None:
    quiet_step_failures()
    quiet_step_failures()  # installed once
    logger = logging.getLogger(ACTIVITY_LOGGER)
    assert sum(isinstance(f, StepFailureFilter) for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger=ACTIVITY_LOGGER):
        logger.info("heartbeat %s", 1)
    assert caplog.records[-1].getMessage() == "heartbeat 1"
