"""Runs of stored definitions: starting, listing, inspecting and steering them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, StringConstraints

from starter.api.common import RequestModel, ResponseModel
from starter.api.definitions import MAX_VERSION
from workflows.definition import DefinitionName
from workflows.types import RunStatus, StepStatus

RUN_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
"""A run key: the last part of the workflow id ``<tenant>/<definition>/<key>``."""
RunKey = Annotated[str, StringConstraints(pattern=RUN_KEY_PATTERN)]
RunStatusName = Literal[
    "running", "waiting", "needs_attention", "completed", "failed", "cancelled", "timed_out"
]
"""A run status as a query parameter (inline in OpenAPI, unlike the enum)."""
assert set(get_args(RunStatusName)) == {s.value for s in RunStatus}


class RunRef(ResponseModel):
    """Where a run is: its address under ``/v1/runs/`` and its Temporal ids."""

    id: str = Field(description="'<definition>/<key>': the run's address under /v1/runs/.")
    definition: str
    key: str = Field(description="The run key (the idempotency key, or a random one).")
    version: int = Field(description="The definition version the run is pinned to.")
    workflow_id: str = Field(description="Temporal's workflow id: '<tenant>/<definition>/<key>'.")
    run_id: str | None = Field(None, description="Temporal's run id.")
    created: bool = Field(False, description="Whether this request started it.")


class RunStart(RequestModel):
    """Start a run of a stored definition."""

    definition: DefinitionName = Field(description="The tenant's definition, else the instance's.")
    version: int | None = Field(
        None, ge=1, le=MAX_VERSION, description="The version to pin (default: the current one)."
    )
    input: Any = Field(None, description="Checked against the definition's input schema.")
    idempotency_key: RunKey | None = Field(
        None,
        description="The run key (or send the Idempotency-Key header): the same key with the "
        "same body returns the same run; with another body it answers 422.",
    )


class RunSummary(ResponseModel):
    """A run as listed."""

    id: str = Field(description="'<definition>/<key>'.")
    definition: str
    key: str
    version: int
    status: RunStatus
    command: str | None = Field(None, description="The command the run answers, if any.")
    workflow_id: str
    started_at: datetime | None = None
    closed_at: datetime | None = None


class StepState(ResponseModel):
    """A step of a run, in brief."""

    step: str
    kind: str
    status: StepStatus
    attempts: int
    error: str | None = Field(None, description="The last error.")


class RunDetail(RunSummary):
    """One run: its input, output or error, and its steps."""

    run_id: str | None = None
    input: Any = None
    output: Any = Field(None, description="Set when the run completed.")
    error: str | None = Field(None, description="Why the run failed, timed out or stopped.")
    steps: list[StepState] = Field(description="Every step, from the run's progress query.")


class StepTrace(StepState):
    """A step of a run, in full."""

    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration: float | None = Field(None, description="Seconds from start to finish.")
    note: str | None = Field(None, description="Why it was skipped, or how it was resolved.")
    fallback: str | None = Field(None, description="The fallback step that stood in for it.")
    items_total: int | None = Field(None, description="for_each: how many items.")
    items_done: int | None = None
    items_failed: list[int] | None = Field(None, description="for_each: indices that failed.")


class RunTrace(ResponseModel):
    """Every step of a run with its attempts, times and last error."""

    id: str
    definition: str
    version: int
    status: RunStatus
    started_at: datetime | None = None
    closed_at: datetime | None = None
    duration: float | None = Field(None, description="Seconds the run took (so far).")
    steps: list[StepTrace]


class RunQuery(RequestModel):
    """Filters of the run list (through Temporal visibility)."""

    definition: DefinitionName | None = None
    status: RunStatusName | None = None
    started_after: datetime | None = Field(None, description="Runs started at or after this.")
    started_before: datetime | None = Field(None, description="Runs started before this.")
    limit: int = Field(50, ge=1, le=200, description="Items per page.")
    cursor: str | None = Field(None, max_length=4096, description="next_cursor of the last page.")


class ErrorQuery(RequestModel):
    """How many of the latest step errors to list."""

    limit: int = Field(50, ge=1, le=200, description="Errors at most.")


class StepError(ResponseModel):
    """A failed or parked step of one of the tenant's runs."""

    run: str = Field(description="The run's id ('<definition>/<key>').")
    definition: str
    version: int
    run_status: RunStatus
    step: str
    kind: str
    status: StepStatus
    attempts: int
    error: str | None = None
    finished_at: datetime | None = None


class StepErrors(ResponseModel):
    """The tenant's latest failed or needs_attention steps, newest runs first."""

    items: list[StepError]
    runs_scanned: int = Field(description="How many failed or parked runs were looked at.")
    runs_unread: list[str] = Field(
        default_factory=list,
        description="Runs among them whose steps could not be read (no worker answered the "
        "progress query in time); their errors are missing from items.",
    )


class Retry(RequestModel):
    """Run a parked step again."""

    with_: dict[str, Any] | None = Field(
        None, alias="with", description="Overrides of the step's inputs."
    )


class Complete(RequestModel):
    """Resolve a parked step as succeeded with this output."""

    output: Any = None


class Fail(RequestModel):
    """Fail the run now."""

    reason: str = Field("failed by an operator", max_length=2000)


class Event(RequestModel):
    """Deliver an event to the run's wait steps."""

    name: str = Field(min_length=1, max_length=200)
    payload: Any = None


class Rerun(RequestModel):
    """Rerun a closed failed run as a new run that reuses the steps that succeeded."""

    key: RunKey | None = Field(None, description="The new run's key (default: a random one).")


class Action(ResponseModel):
    """What the run accepted."""

    id: str = Field(description="The run's id.")
    action: str = Field(description="retry, complete, skip, fail, event or cancel.")
    step: str | None = None
