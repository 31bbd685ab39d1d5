"""``DagCommand``: runs a command's bound runs one after another, as child ``DagRun`` runs.

The starter starts one ``DagCommand`` run when a command has several bindings. Its plan lists
the runs in order (the instance's bindings, then the tenant's). Each run starts as a child
workflow when the one before it has completed, under its own workflow id
``<tenant>/<definition>/<key>``. If a run fails, is cancelled, times out or cannot start (its
id is in use), the runs after it never start (``not_run``) and the command fails with a
non-retryable ``CommandFailed`` error that names the run and why. Cancelling the command
cancels the run in progress and starts no other.

The history stays small: a handful of events per run, and a command has few bindings, so the
workflow never continues as new.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    TerminatedError,
    WorkflowAlreadyStartedError,
)
from temporalio.exceptions import TimeoutError as TemporalTimeout

with workflow.unsafe.imports_passed_through():
    import pydantic

    from workflows.scheduling import tenant_priority
    from workflows.search_attributes import DAG_COMMAND, DAG_STATUS, TENANT_ID, run_attributes
    from workflows.types import (
        COMMAND_FAILED,
        COMMAND_WORKFLOW_TYPE,
        DAG_STATUS_VALUES,
        WORKFLOW_TYPE,
        CommandProgress,
        CommandRunState,
        CommandRunStatus,
        DagCommandInput,
        PlannedRun,
        RunStatus,
    )

RUN_TIMED_OUT = "RunTimedOut"
"""The error type of a ``DagRun`` that passed its definition's ``timeout``."""


def command_workflow_id(tenant: str, command_id: str) -> str:
    """``<tenant>/command:<command id>``: a colon never occurs in a definition name, so this
    id never collides with a run's ``<tenant>/<definition>/<key>``."""
    return f"{tenant}/command:{command_id}"


def command_summary(tenant: str, command_type: str, command_id: str) -> str:
    """The static summary the Web UI shows for a command run."""
    return f"{tenant} · command {command_type} {command_id}"


def child_outcome(error: ChildWorkflowError) -> tuple[CommandRunStatus, str]:
    """How a child run ended that did not complete, and one line saying why."""
    cause = error.cause
    if isinstance(cause, CancelledError):
        return CommandRunStatus.CANCELLED, "cancelled"
    if isinstance(cause, TerminatedError):
        return CommandRunStatus.FAILED, f"terminated: {cause.message}".removesuffix(": ")
    if isinstance(cause, TemporalTimeout):
        return CommandRunStatus.TIMED_OUT, "passed Temporal's execution timeout"
    if isinstance(cause, ApplicationError):
        status = CommandRunStatus.TIMED_OUT if cause.type == RUN_TIMED_OUT else None
        reason = f"{cause.type}: {cause.message}" if cause.type else cause.message
        return status or CommandRunStatus.FAILED, reason
    return CommandRunStatus.FAILED, str(cause or error)


@workflow.defn(name=COMMAND_WORKFLOW_TYPE, failure_exception_types=[pydantic.ValidationError])
class DagCommand:
    """Runs a command's planned runs strictly in order, each after the one before completed."""

    @workflow.init
    def __init__(self, arg: DagCommandInput) -> None:
        self.arg = arg
        self.states = [
            CommandRunState(
                workflow_id=plan.workflow_id,
                definition=plan.run.definition.name,
                version=plan.run.version,
                scope=plan.scope,
                binding=plan.binding,
            )
            for plan in arg.runs
        ]
        self.status = RunStatus.RUNNING
        self.error: str | None = None
        self._published: str | None = None
        self._details = ""

    @workflow.run
    async def run(self, arg: DagCommandInput) -> CommandProgress:
        """Run the plan in order; fail with ``CommandFailed`` at the first run that does not
        complete."""
        self._ensure_attributes()
        self._publish()
        # The runs go in a task of their own, so that cancelling the command (which cancels
        # this coroutine) is told apart from a run that someone cancelled on its own.
        sequence = asyncio.create_task(self._run_in_order())
        try:
            await workflow.wait_condition(sequence.done)
        except asyncio.CancelledError:
            sequence.cancel()
            await asyncio.gather(sequence, return_exceptions=True)
            self._finish(RunStatus.CANCELLED, "the command was cancelled")
            raise
        stopped = sequence.result()
        if stopped is None:
            self._finish(RunStatus.COMPLETED, None)
            return self.progress()
        state = self.states[stopped]
        skipped = [s.workflow_id for s in self.states if s.status == CommandRunStatus.NOT_RUN]
        message = (
            f"run {state.workflow_id} (the {state.scope} binding {state.binding}) "
            f"{state.status.value}: {state.error}"
        )
        if skipped:
            message += f"; not run: {', '.join(skipped)}"
        self._finish(RunStatus.FAILED, message)
        raise ApplicationError(
            message,
            {"run": state.workflow_id, "status": state.status.value, "not_run": skipped},
            type=COMMAND_FAILED,
            non_retryable=True,
        )

    async def _run_in_order(self) -> int | None:
        """Run each planned run after the one before completed; the index of the run that
        stopped the command (the later ones are then ``not_run``), or None."""
        for index, plan in enumerate(self.arg.runs):
            status, error = await self._run_one(index, plan)
            state = self.states[index]
            state.status, state.error = status, error
            state.finished_at = workflow.now()
            if status != CommandRunStatus.COMPLETED:
                for later in self.states[index + 1 :]:
                    later.status = CommandRunStatus.NOT_RUN
                self._publish()
                return index
            self._publish()
        return None

    async def _run_one(self, index: int, plan: PlannedRun) -> tuple[CommandRunStatus, str | None]:
        state = self.states[index]
        state.status = CommandRunStatus.RUNNING
        state.started_at = workflow.now()
        self._publish()
        run = plan.run.model_copy(update={"input": self.arg.input})
        name, version = run.definition.name, run.version
        try:
            handle = await workflow.start_child_workflow(
                WORKFLOW_TYPE,
                run,
                id=plan.workflow_id,
                execution_timeout=plan.execution_timeout,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
                search_attributes=run_attributes(run.tenant, name, version, run.command),
                static_summary=f"{run.tenant} · {name} v{version}",
                memo=plan.memo or None,
                priority=tenant_priority(run.tenant),
            )
        except WorkflowAlreadyStartedError:
            return CommandRunStatus.FAILED, (
                f"could not start: the workflow id {plan.workflow_id} is in use"
            )
        except asyncio.CancelledError:
            return CommandRunStatus.CANCELLED, "the command was cancelled"
        state.run_id = handle.first_execution_run_id
        self._publish()
        try:
            await handle
        except ChildWorkflowError as error:
            return child_outcome(error)
        except asyncio.CancelledError:
            return CommandRunStatus.CANCELLED, "the command was cancelled"
        return CommandRunStatus.COMPLETED, None

    def _finish(self, status: RunStatus, error: str | None) -> None:
        for state in self.states:
            if state.status == CommandRunStatus.PENDING:
                state.status = CommandRunStatus.NOT_RUN
        self.status, self.error = status, error
        self._publish()

    # --- what the Web UI and the starter see ----------------------------------------------

    @workflow.query(name="runs")
    def progress(self) -> CommandProgress:
        """Every planned run's state, in order."""
        return CommandProgress(
            tenant=self.arg.tenant,
            type=self.arg.type,
            id=self.arg.id,
            status=self.status,
            error=self.error,
            runs=[state.model_copy() for state in self.states],
        )

    def _ensure_attributes(self) -> None:
        """Set ``TenantId`` and ``DagCommand`` when the starter did not (it does)."""
        current = workflow.info().typed_search_attributes
        self._published = current.get(DAG_STATUS)
        if current.get(TENANT_ID) is None:
            workflow.upsert_search_attributes(
                [TENANT_ID.value_set(self.arg.tenant), DAG_COMMAND.value_set(self.arg.type)]
            )

    def _publish(self) -> None:
        """Upsert ``DagStatus`` when it changed and refresh the Web UI's details."""
        value = DAG_STATUS_VALUES[self.status]
        if value != self._published:
            workflow.upsert_search_attributes([DAG_STATUS.value_set(value)])
            self._published = value
        details = self._markdown()
        if details != self._details:
            workflow.set_current_details(details)
            self._details = details

    def _markdown(self) -> str:
        lines = [
            f"**{self.status.value}** · command {self.arg.type} {self.arg.id}",
            "",
            "| # | run | scope | status |",
            "|---|---|---|---|",
        ]
        for n, state in enumerate(self.states, 1):
            run = state.workflow_id.split("/", 1)[-1]
            lines.append(f"| {n} | {run} | {state.scope} | {state.status.value} |")
        return "\n".join(lines)
