"""Worker logs that read like the definition: a step that fails is one line, not a traceback.

The Temporal SDK logs every failed activity attempt at WARNING with the whole traceback. For
a step, that failure is usually expected (a 503 from a service, a refused address, a timed
out attempt, a circuit that is open) and its traceback shows dagflow's HTTP client, not the
cause. :class:`StepFailureFilter` turns those records into one line that names the step, the
attempt and the error. A failure whose cause is not an ``ApplicationError`` (a bug in a
plugin: ``KeyError``, ``TypeError``) keeps its traceback.
"""

from __future__ import annotations

import logging

from temporalio.exceptions import ApplicationError

ACTIVITY_LOGGER = "temporalio.activity"


class StepFailureFilter(logging.Filter):
    """Shortens the SDK's "Completing activity as failed" records of expected step failures."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "__temporal_error_identifier", None) != "ActivityFailure":
            return True
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, ApplicationError) or _has_foreign_cause(error):
            return True
        details = getattr(record, "temporal_activity", None) or {}
        step = details.get("activity_id", "?")
        attempt = details.get("attempt", "?")
        workflow_id = details.get("workflow_id", "?")
        kind = f"{error.type}: " if error.type else ""
        record.msg = "step %s attempt %s of %s failed: %s%s"
        record.args = (step, attempt, workflow_id, kind, error.message)
        record.exc_info = None
        record.exc_text = None
        return True


def _has_foreign_cause(error: BaseException) -> bool:
    """Whether any cause in the chain is not an ``ApplicationError`` (an unexpected bug)."""
    seen: set[int] = set()
    cause = error.__cause__
    while cause is not None and id(cause) not in seen:
        if not isinstance(cause, ApplicationError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__
    return False


def quiet_step_failures() -> None:
    """Install :class:`StepFailureFilter` on the SDK's activity logger (once)."""
    logger = logging.getLogger(ACTIVITY_LOGGER)
    if not any(isinstance(f, StepFailureFilter) for f in logger.filters):
        logger.addFilter(StepFailureFilter())
