"""Models that cross the workflow boundary: run input, activity input, query and signal bodies."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workflows.definition import Definition

WORKFLOW_TYPE = "DagRun"
FOR_EACH_BATCH_WORKFLOW_TYPE = "DagForEachBatch"
COMMAND_WORKFLOW_TYPE = "DagCommand"
COMMAND_FAILED = "CommandFailed"
"""The error type with which ``DagCommand`` fails when one of its runs did not complete."""
DEFAULT_TASK_QUEUE = "dagflow"
UNKNOWN_STEP = "UnknownStep"
NOT_PARKED = "NotParked"
"""Error types with which the recovery Updates reject a step."""


class StepStatus(StrEnum):
    """Where a step stands."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    NEEDS_ATTENTION = "needs_attention"
    CANCELLED = "cancelled"


class RunStatus(StrEnum):
    """Where a run stands."""

    RUNNING = "running"
    WAITING = "waiting"
    NEEDS_ATTENTION = "needs_attention"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


DAG_STATUS_VALUES = {
    RunStatus.RUNNING: "Running",
    RunStatus.WAITING: "Waiting",
    RunStatus.NEEDS_ATTENTION: "NeedsAttention",
    RunStatus.COMPLETED: "Completed",
    RunStatus.FAILED: "Failed",
    RunStatus.CANCELLED: "Cancelled",
    RunStatus.TIMED_OUT: "TimedOut",
}
"""The ``DagStatus`` search attribute's value for each run status."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LinearBackoff(_Model):
    """Linear retry delays, which Temporal's RetryPolicy cannot express: the activity side
    raises with ``next_retry_delay = initial + increment * (attempt - 1)``, capped."""

    initial: timedelta
    increment: timedelta
    maximum: timedelta | None = None

    def delay(self, attempt: int) -> timedelta:
        """The wait after attempt ``attempt`` (1-based) fails."""
        delay = self.initial + self.increment * (attempt - 1)
        return min(delay, self.maximum) if self.maximum else delay


class StepInput(_Model):
    """The one argument every step activity (built-in or plugin) receives."""

    tenant: str
    workflow_id: str
    definition: str
    step: str
    index: int | None = None
    key: str = Field(description="The step's name in the run: 'charge' or 'reserve[3]'.")
    kind: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    secret: str | None = Field(None, description="Name of a secret the activity resolves.")
    idempotency_key: str = Field(description="Stable across the retries of one attempt series.")
    linear_backoff: LinearBackoff | None = None


class DagRunInput(_Model):
    """What starts a run: the pinned definition, the input and who it belongs to."""

    definition: Definition
    input: Any = None
    tenant: str = "default"
    version: int = 0
    command: str | None = None
    library: dict[str, Definition] = Field(
        default_factory=dict,
        description="Definitions that workflow steps may run, by 'name@version' and 'name'.",
    )
    resume: RunState | None = Field(None, description="Carried over by continue-as-new.")
    reuse: dict[str, StepRecord] = Field(
        default_factory=dict,
        description="A rerun's records from the earlier run: succeeded steps keep their output.",
    )
    history_limit: int = Field(
        8000, description="History length at which the run continues as new."
    )
    batch_size: int = Field(
        250, description="for_each lists longer than this run in child workflow batches."
    )
    batches_at_once: int = Field(
        2,
        ge=1,
        description="for_each batches in flight at once when the step sets no concurrency.",
    )


class StepRecord(_Model):
    """A step's state inside the workflow (and carried over by continue-as-new)."""

    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    series: int = 1
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    note: str | None = Field(None, description="Why it was skipped, or how it was resolved.")
    output: Any = None
    wait_until: datetime | None = Field(None, description="When a wait step stops waiting.")
    fallback: str | None = Field(None, description="The fallback step that stood in for it.")
    items_total: int | None = None
    items_done: int | None = None
    items_failed: list[int] | None = None
    item_outputs: dict[int, Any] | None = None


class RunState(_Model):
    """Everything a run carries across continue-as-new."""

    steps: dict[str, StepRecord]
    events: dict[str, Any] = Field(
        default_factory=dict, description="Latest payload of every event received, by name."
    )
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    started_at: datetime
    deadline: datetime | None = None
    continued: int = 0


class StepProgress(_Model):
    """One step in the ``progress`` query."""

    step: str
    kind: str
    status: StepStatus
    attempts: int
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    note: str | None = None
    fallback: str | None = None
    items_total: int | None = None
    items_done: int | None = None
    items_failed: list[int] | None = None


class Progress(_Model):
    """Answer of the ``progress`` query."""

    status: RunStatus
    tenant: str
    definition: str
    version: int
    started_at: datetime
    continued: int = 0
    error: str | None = None
    steps: list[StepProgress]


class RunSnapshot(_Model):
    """Answer of the ``snapshot`` query: what a rerun needs — the input and every step's record
    with its output."""

    tenant: str
    definition: str
    version: int
    command: str | None = None
    input: Any = None
    status: RunStatus
    error: str | None = None
    steps: dict[str, StepRecord]


class RetryStep(_Model):
    """Body of ``retry_step``: run a parked step again, ``with`` overriding its inputs."""

    step: str
    with_: dict[str, Any] | None = Field(None, alias="with")


class CompleteStep(_Model):
    """Body of ``complete_step``: resolve a parked step as succeeded with this output."""

    step: str
    output: Any = None


class SkipStep(_Model):
    """Body of ``skip_step``: resolve a parked step as skipped."""

    step: str


class FailRun(_Model):
    """Body of ``fail_run``."""

    reason: str = "failed by an operator"


class SendEvent(_Model):
    """Body of ``send_event``: deliver an event to ``wait`` steps waiting on ``name``."""

    name: str
    payload: Any = None


class StepResult(_Model):
    """What a step activity returns to the workflow: its output and the attempt that made it.

    The worker's interceptor wraps every step activity's return value in this envelope.
    """

    output: Any = None
    attempt: int = 1


class Ack(_Model):
    """Answer of the recovery Updates."""

    step: str | None = None
    action: str


class ForEachBatchInput(_Model):
    """A slice of a big ``for_each``, run as a child workflow."""

    run: DagRunInput
    workflow_id: str = Field(description="The parent run's id, so step keys stay stable.")
    step: str
    indices: list[int]
    items: list[Any]
    concurrency: int | None = None
    series: int = 1
    overrides: dict[str, Any] | None = None
    steps: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="The upstream outputs the step's expressions read."
    )
    fail_fast: bool = True


class ForEachBatchResult(_Model):
    """Outputs by item index, the items that failed with their errors, and the most attempts."""

    outputs: dict[int, Any] = Field(default_factory=dict)
    failed: dict[int, str] = Field(default_factory=dict)
    attempts: int = 0


class CommandRunStatus(StrEnum):
    """Where one of a command's runs stands, as its ``DagCommand`` run sees it. A run that
    waits or needs attention is ``running``: the command waits for it to close."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    NOT_RUN = "not_run"


class PlannedRun(_Model):
    """One run of a command's plan, ready to start as a child ``DagRun``."""

    workflow_id: str = Field(description="'<tenant>/<definition>/<key>'.")
    scope: Literal["instance", "tenant"]
    binding: int
    run: DagRunInput = Field(
        description="What the run starts with; its input is the command's (DagCommandInput.input)."
    )
    execution_timeout: timedelta | None = None
    memo: dict[str, Any] = Field(default_factory=dict)


class DagCommandInput(_Model):
    """What starts a ``DagCommand`` run: the command and its runs, in the order they run."""

    tenant: str
    type: str
    id: str
    input: Any = Field(None, description="The payload: every run's input, kept here once.")
    runs: list[PlannedRun]


class CommandRunState(_Model):
    """One planned run in the ``runs`` query."""

    workflow_id: str
    definition: str
    version: int
    scope: Literal["instance", "tenant"]
    binding: int
    status: CommandRunStatus = CommandRunStatus.PENDING
    run_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None


class CommandProgress(_Model):
    """Answer of ``DagCommand``'s ``runs`` query, and its result."""

    tenant: str
    type: str
    id: str
    status: RunStatus = Field(description="running, completed, failed or cancelled.")
    error: str | None = None
    runs: list[CommandRunState]


DagRunInput.model_rebuild()
