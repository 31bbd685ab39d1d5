"""Runs: start, list, inspect and steer runs of stored definitions (tenant keys only).

Temporal is the source of truth for runs: nothing about them is stored in SQL. Every run is
addressed as ``/v1/runs/{definition}/{key}`` and is the workflow ``<tenant>/<definition>/<key>``
of the caller's tenant, so another tenant's runs cannot be named; visibility queries always
carry ``TenantId = '<tenant>'``, with every value checked against its pattern and quoted.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import TypedSearchAttributes
from temporalio.exceptions import ApplicationError, CancelledError, FailureError, TerminatedError
from temporalio.exceptions import TimeoutError as TemporalTimeout
from temporalio.service import RPCError, RPCStatusCode

from starter import keys
from starter.api.common import Page
from starter.api.runs import (
    RUN_KEY_PATTERN,
    Action,
    Complete,
    ErrorQuery,
    Event,
    Fail,
    Rerun,
    Retry,
    RunDetail,
    RunQuery,
    RunRef,
    RunStart,
    RunSummary,
    RunTrace,
    StepError,
    StepErrors,
    StepState,
    StepTrace,
)
from starter.errors import (
    BadRequest,
    Conflict,
    FieldError,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from starter.launch import start_run, workflow_id
from starter.repos import definitions as repo
from starter.routes.pagination import decode_cursor, encode_cursor
from starter.routes.table import Call, PathParam, Route, json_response
from starter.runs import REQUEST_HASH, existing_run, request_hash, start_stored_run, started_ref
from starter.temporal import RETRY_AFTER
from worker.payloads import TOO_LARGE, too_large
from workflows.command import command_workflow_id
from workflows.search_attributes import DAG_COMMAND, DAG_NAME, DAG_STATUS, DAG_VERSION, TENANT_ID
from workflows.types import (
    DAG_STATUS_VALUES,
    UNKNOWN_STEP,
    WORKFLOW_TYPE,
    Ack,
    CompleteStep,
    DagRunInput,
    FailRun,
    Progress,
    RetryStep,
    RunSnapshot,
    RunStatus,
    SendEvent,
    SkipStep,
    StepStatus,
)

RPC_TIMEOUT = timedelta(seconds=10)
ERRORS_QUERY_TIMEOUT = timedelta(seconds=5)
"""How long the error list waits for one run's progress query before naming it unread."""
"""How long a query or Update of a run may take before the answer is 503."""
ERROR_RUNS_SCANNED = 50
"""``GET /v1/errors`` looks at this many of the latest failed or parked runs at most."""
PARALLEL_QUERIES = 10
OPEN_STATUSES = frozenset({RunStatus.RUNNING, RunStatus.WAITING, RunStatus.NEEDS_ATTENTION})
RERUNNABLE = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CANCELLED})
IDEMPOTENCY_HEADER = "Idempotency-Key"
KEY_HEADER = PathParam(
    RUN_KEY_PATTERN,
    "The run key (or the body's idempotency_key): the same key with the same body returns the "
    "same run (200); with another body it answers 422.",
)

_CLOSED: dict[WorkflowExecutionStatus, RunStatus] = {
    WorkflowExecutionStatus.COMPLETED: RunStatus.COMPLETED,
    WorkflowExecutionStatus.FAILED: RunStatus.FAILED,
    WorkflowExecutionStatus.CANCELED: RunStatus.CANCELLED,
    WorkflowExecutionStatus.TERMINATED: RunStatus.FAILED,
    WorkflowExecutionStatus.TIMED_OUT: RunStatus.TIMED_OUT,
}
_OPEN: dict[str | None, RunStatus] = {
    DAG_STATUS_VALUES[RunStatus.WAITING]: RunStatus.WAITING,
    DAG_STATUS_VALUES[RunStatus.NEEDS_ATTENTION]: RunStatus.NEEDS_ATTENTION,
}
_STATUS_FILTERS: dict[RunStatus, str] = {
    RunStatus.RUNNING: "ExecutionStatus = 'Running' AND DagStatus = 'Running'",
    RunStatus.WAITING: "ExecutionStatus = 'Running' AND DagStatus = 'Waiting'",
    RunStatus.NEEDS_ATTENTION: "ExecutionStatus = 'Running' AND DagStatus = 'NeedsAttention'",
    RunStatus.COMPLETED: "ExecutionStatus = 'Completed'",
    RunStatus.FAILED: "((ExecutionStatus = 'Failed' AND DagStatus != 'TimedOut') "
    "OR ExecutionStatus = 'Terminated')",
    RunStatus.CANCELLED: "ExecutionStatus = 'Canceled'",
    RunStatus.TIMED_OUT: "(ExecutionStatus = 'TimedOut' "
    "OR (ExecutionStatus = 'Failed' AND DagStatus = 'TimedOut'))",
}
"""The visibility clause of each API status (the same mapping as :func:`run_status`)."""


# --- visibility queries ------------------------------------------------------------------------


def literal(value: str) -> str:
    """A string literal of Temporal's visibility query language, quotes and backslashes
    escaped (values are checked against their patterns before they get here, too)."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def timestamp(value: datetime) -> str:
    """A time as a quoted RFC 3339 literal (naive times are UTC)."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return literal(aware.astimezone(UTC).isoformat())


def runs_query(
    tenant: str,
    *,
    definition: str | None = None,
    status: RunStatus | None = None,
    started_after: datetime | None = None,
    started_before: datetime | None = None,
    statuses: tuple[str, ...] = (),
) -> str:
    """The visibility query of a tenant's runs: top-level runs and the runs of commands (the
    children of ``DagCommand`` runs, ``<tenant>/command:<id>``), but not the child runs of
    ``workflow`` steps nor the command runs themselves. Temporal lists open runs first, then
    closed ones by close time, newest first (``ORDER BY`` needs advanced visibility, which the
    SQLite dev server lacks).

    Args:
        tenant: Always part of the query.
        definition: Only runs of this definition.
        status: Only runs in this API status.
        started_after: Only runs started at or after this time.
        started_before: Only runs started before this time.
        statuses: Only runs whose ``DagStatus`` is one of these.
    """
    clauses = [
        f"TenantId = {literal(tenant)}",
        f"WorkflowType = {literal(WORKFLOW_TYPE)}",
        "(ParentWorkflowId IS NULL OR ParentWorkflowId STARTS_WITH "
        f"{literal(command_workflow_id(tenant, ''))})",
    ]
    if definition is not None:
        clauses.append(f"DagName = {literal(definition)}")
    if status is not None:
        clauses.append(_STATUS_FILTERS[status])
    if statuses:
        clauses.append(f"DagStatus IN ({', '.join(literal(s) for s in statuses)})")
    if started_after is not None:
        clauses.append(f"StartTime >= {timestamp(started_after)}")
    if started_before is not None:
        clauses.append(f"StartTime < {timestamp(started_before)}")
    return " AND ".join(clauses)


def run_status(
    execution: WorkflowExecutionStatus | None, attributes: TypedSearchAttributes
) -> RunStatus:
    """A run's API status from Temporal's execution status and the ``DagStatus`` attribute.

    The engine fails a run that passes its ``timeout`` (``DagStatus`` TimedOut): that is
    ``timed_out``, as is Temporal's own execution timeout. A terminated run is ``failed``.
    """
    dag_status = attributes.get(DAG_STATUS)
    if execution is None or execution in (
        WorkflowExecutionStatus.RUNNING,
        WorkflowExecutionStatus.CONTINUED_AS_NEW,
    ):
        return _OPEN.get(dag_status, RunStatus.RUNNING)
    if execution == WorkflowExecutionStatus.FAILED and dag_status == "TimedOut":
        return RunStatus.TIMED_OUT
    return _CLOSED[execution]


# --- one run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A run of the caller's tenant, described."""

    client: Client
    handle: WorkflowHandle[Any, Any]
    """Bound to the run's latest execution."""
    described: WorkflowExecutionDescription
    definition: str
    key: str

    @property
    def id(self) -> str:
        """``<definition>/<key>``."""
        return f"{self.definition}/{self.key}"

    @property
    def status(self) -> RunStatus:
        """The run's API status as Temporal describes it."""
        return run_status(self.described.status, self.described.typed_search_attributes)

    @property
    def is_open(self) -> bool:
        """Whether the run has not closed."""
        return self.described.status == WorkflowExecutionStatus.RUNNING

    def summary(self, status: RunStatus | None = None) -> RunSummary:
        """The run as listed."""
        attributes = self.described.typed_search_attributes
        return RunSummary(
            id=self.id,
            definition=self.definition,
            key=self.key,
            version=attributes.get(DAG_VERSION) or 0,
            status=status or self.status,
            command=attributes.get(DAG_COMMAND),
            workflow_id=self.described.id,
            started_at=self.described.start_time,
            closed_at=self.described.close_time,
        )

    async def progress(self) -> Progress:
        """The ``progress`` query."""
        result: Progress = await self.handle.query(
            "progress", result_type=Progress, rpc_timeout=RPC_TIMEOUT
        )
        return result

    async def start_input(self) -> DagRunInput:
        """What the run's latest execution started with (definition, input, library)."""
        async for event in self.handle.fetch_history_events(page_size=1, rpc_timeout=RPC_TIMEOUT):
            payloads = list(event.workflow_execution_started_event_attributes.input.payloads)
            [arg] = await self.client.data_converter.decode(payloads, [DagRunInput])
            assert isinstance(arg, DagRunInput)
            return arg
        raise NotFound(f"run {self.id} has no history")

    async def outcome(self) -> tuple[Any, str | None]:
        """The output of a completed run, or why a closed run did not complete."""
        if self.is_open:
            return None, None
        try:
            return await self.handle.result(follow_runs=False, rpc_timeout=RPC_TIMEOUT), None
        except WorkflowFailureError as error:
            return None, failure_reason(error)


def failure_reason(error: WorkflowFailureError) -> str:
    """One line saying why a run ended without completing."""
    cause = error.cause
    if isinstance(cause, CancelledError):
        return "cancelled"
    if isinstance(cause, TerminatedError):
        return f"terminated: {cause.message}" if cause.message else "terminated"
    if isinstance(cause, TemporalTimeout):
        return "the run passed Temporal's execution timeout"
    if isinstance(cause, FailureError):
        return cause.message
    return str(cause or error)


async def temporal_client(call: Call[Any]) -> Client:
    """The service's Temporal client (503 with Retry-After when Temporal does not answer)."""
    return await call.request.app[keys.TEMPORAL].client()


async def find_run(call: Call[Any]) -> Run:
    """The run the path names, of the caller's tenant.

    Raises:
        NotFound: If the tenant has no such run.
    """
    tenant = call.principal.tenant
    definition, key = call.path("definition"), call.path("key")
    client = await temporal_client(call)
    wid = workflow_id(tenant, definition, key)
    try:
        described = await client.get_workflow_handle(wid).describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"no run {definition}/{key}") from None
        raise
    attributes = described.typed_search_attributes
    if described.workflow_type != WORKFLOW_TYPE or attributes.get(TENANT_ID) != tenant:
        raise NotFound(f"no run {definition}/{key}")
    handle = client.get_workflow_handle(wid, run_id=described.run_id)
    return Run(client, handle, described, definition, key)


async def open_run(call: Call[Any]) -> Run:
    """The run the path names, which must still be open.

    Raises:
        NotFound: If the tenant has no such run.
        Conflict: If it has closed.
    """
    run = await find_run(call)
    if not run.is_open:
        raise Conflict(f"run {run.id} is closed ({run.status})")
    return run


# --- handlers ----------------------------------------------------------------------------------


async def start_run_route(call: Call[RunStart]) -> web.Response:
    """Start a run of a definition; a repeated key with the same body answers that run (200)."""
    body = call.input
    key = _idempotency_key(call.request, body.idempotency_key)
    settings = call.request.app[keys.SETTINGS]
    digest = request_hash(
        {"definition": body.definition, "version": body.version, "input": body.input}
    )
    ref, started = await start_stored_run(
        call.session,
        await temporal_client(call),
        call.principal.tenant,
        body.definition,
        version=body.version,
        input=body.input,
        key=key,
        command=None,
        task_queue=settings.task_queue,
        request=digest,
        versions=call.request.app[keys.VERSIONS],
    )
    return json_response(ref, 201 if started else 200, Location=f"/v1/runs/{ref.id}")


def _idempotency_key(request: web.Request, in_body: str | None) -> str | None:
    header = request.headers.get(IDEMPOTENCY_HEADER)
    if header is None:
        return in_body
    path = f"header.{IDEMPOTENCY_HEADER}"
    if not re.match(RUN_KEY_PATTERN, header):
        message = f"bad {IDEMPOTENCY_HEADER} {header!r}: must match {RUN_KEY_PATTERN.strip('^$')}"
        raise BadRequest(message, errors=[FieldError(path=path, message=message)])
    if in_body is not None and in_body != header:
        message = f"the {IDEMPOTENCY_HEADER} header and idempotency_key differ; send one"
        raise BadRequest(message, errors=[FieldError(path=path, message=message)])
    return header


async def list_runs(call: Call[RunQuery]) -> Page[RunSummary]:
    """The tenant's runs (open first, then newest closed) via Temporal visibility; filters."""
    query = call.input
    text = runs_query(
        call.principal.tenant,
        definition=query.definition,
        status=RunStatus(query.status) if query.status else None,
        started_after=query.started_after,
        started_before=query.started_before,
    )
    fingerprint = hashlib.sha256(text.encode()).hexdigest()[:16]
    token = _page_token(query.cursor, fingerprint)
    client = await temporal_client(call)
    pages = client.list_workflows(
        text, page_size=query.limit, next_page_token=token, rpc_timeout=RPC_TIMEOUT
    )
    try:
        await pages.fetch_next_page()
    except RPCError as error:
        if error.status == RPCStatusCode.INVALID_ARGUMENT and token is not None:
            raise _bad_cursor() from None
        raise
    items = []
    for execution in pages.current_page or []:
        parts = execution.id.split("/")
        if len(parts) != 3:
            continue
        attributes = execution.typed_search_attributes
        items.append(
            RunSummary(
                id=f"{parts[1]}/{parts[2]}",
                definition=attributes.get(DAG_NAME) or parts[1],
                key=parts[2],
                version=attributes.get(DAG_VERSION) or 0,
                status=run_status(execution.status, attributes),
                command=attributes.get(DAG_COMMAND),
                workflow_id=execution.id,
                started_at=execution.start_time,
                closed_at=execution.close_time,
            )
        )
    next_token = pages.next_page_token
    cursor = encode_cursor(fingerprint, next_token.hex()) if next_token else None
    return Page[RunSummary](items=items, next_cursor=cursor)


def _page_token(cursor: str | None, fingerprint: str) -> bytes | None:
    decoded = decode_cursor(cursor, str, str)
    if decoded is None:
        return None
    if decoded[0] != fingerprint:
        raise _bad_cursor("the cursor belongs to a list with other filters")
    try:
        return bytes.fromhex(decoded[1])
    except ValueError:
        raise _bad_cursor() from None


def _bad_cursor(message: str = "not a cursor this list gave out") -> BadRequest:
    return BadRequest(message, errors=[FieldError(path="query.cursor", message=message)])


async def get_run(call: Call[None]) -> RunDetail:
    """One run: status, pinned version, input, output or error, and every step's state."""
    run = await find_run(call)
    progress, started, (output, error) = await asyncio.gather(
        run.progress(), run.start_input(), run.outcome()
    )
    status = _open_status(progress) if run.is_open else run.status
    return RunDetail(
        **run.summary(status).model_dump(),
        run_id=run.described.run_id,
        input=started.input,
        output=output,
        error=error or progress.error,
        steps=[
            StepState(step=s.step, kind=s.kind, status=s.status, attempts=s.attempts, error=s.error)
            for s in progress.steps
        ],
    )


async def trace_run(call: Call[None]) -> RunTrace:
    """Every step of a run: status, attempts, start and end, duration, last error, notes."""
    run = await find_run(call)
    progress = await run.progress()
    status = _open_status(progress) if run.is_open else run.status
    started, closed = run.described.start_time, run.described.close_time
    return RunTrace(
        id=run.id,
        definition=run.definition,
        version=progress.version,
        status=status,
        started_at=started,
        closed_at=closed,
        duration=_seconds(started, closed or datetime.now(UTC)),
        steps=[
            StepTrace(
                step=s.step,
                kind=s.kind,
                status=s.status,
                attempts=s.attempts,
                error=s.error,
                started_at=s.started_at,
                finished_at=s.finished_at,
                duration=_seconds(s.started_at, s.finished_at),
                note=s.note,
                fallback=s.fallback,
                items_total=s.items_total,
                items_done=s.items_done,
                items_failed=s.items_failed,
            )
            for s in progress.steps
        ],
    )


def _open_status(progress: Progress) -> RunStatus:
    """An open run's status from its progress: a run that has decided its outcome but not yet
    closed is still ``running`` (its output or error comes when Temporal closes it)."""
    return progress.status if progress.status in OPEN_STATUSES else RunStatus.RUNNING


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max((end - start).total_seconds(), 0.0), 3)


async def list_errors(call: Call[ErrorQuery]) -> StepErrors:
    """The tenant's latest failed or needs_attention steps, across its latest such runs."""
    tenant = call.principal.tenant
    wanted = (
        DAG_STATUS_VALUES[RunStatus.FAILED],
        DAG_STATUS_VALUES[RunStatus.NEEDS_ATTENTION],
    )
    client = await temporal_client(call)
    pages = client.list_workflows(
        runs_query(tenant, statuses=wanted),
        page_size=ERROR_RUNS_SCANNED,
        rpc_timeout=RPC_TIMEOUT,
    )
    await pages.fetch_next_page()
    executions = [e for e in pages.current_page or [] if len(e.id.split("/")) == 3]
    slots = asyncio.Semaphore(PARALLEL_QUERIES)
    unanswered: list[str] = []

    async def errors_of(index: int) -> list[StepError]:
        execution = executions[index]
        _, definition, key = execution.id.split("/")
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        async with slots:
            try:
                progress: Progress = await handle.query(
                    "progress", result_type=Progress, rpc_timeout=ERRORS_QUERY_TIMEOUT
                )
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:
                    # no worker answered in time (or the query failed): one run that cannot
                    # be read must not hide the others' errors, so it is named instead
                    unanswered.append(f"{definition}/{key}")
                return []
        status = run_status(execution.status, execution.typed_search_attributes)
        return [
            StepError(
                run=f"{definition}/{key}",
                definition=definition,
                version=progress.version,
                run_status=status,
                step=s.step,
                kind=s.kind,
                status=s.status,
                attempts=s.attempts,
                error=s.error,
                finished_at=s.finished_at,
            )
            for s in progress.steps
            if s.status in (StepStatus.FAILED, StepStatus.NEEDS_ATTENTION)
        ]

    found = await asyncio.gather(*(errors_of(i) for i in range(len(executions))))
    items = [error for errors in found for error in errors][: call.input.limit]
    return StepErrors(items=items, runs_scanned=len(executions), runs_unread=sorted(unanswered))


async def retry_step(call: Call[Retry]) -> Action:
    """Run a parked step again, ``with`` overriding its inputs (409 unless it is parked)."""
    step = call.path("step")
    return await _update(call, "retry_step", RetryStep(step=step, with_=call.input.with_), step)


async def complete_step(call: Call[Complete]) -> Action:
    """Resolve a parked step as succeeded with the given output (409 unless it is parked)."""
    step = call.path("step")
    return await _update(
        call, "complete_step", CompleteStep(step=step, output=call.input.output), step
    )


async def skip_step(call: Call[None]) -> Action:
    """Resolve a parked step as skipped (409 unless it is parked)."""
    step = call.path("step")
    return await _update(call, "skip_step", SkipStep(step=step), step)


async def fail_run(call: Call[Fail]) -> Action:
    """Fail an open run now, with a reason."""
    return await _update(call, "fail_run", FailRun(reason=call.input.reason), None)


async def send_event(call: Call[Event]) -> Action:
    """Deliver an event to the run's ``wait`` steps waiting on its name (now or later)."""
    body = call.input
    return await _update(call, "send_event", SendEvent(name=body.name, payload=body.payload), None)


async def cancel_run(call: Call[None]) -> Action:
    """Ask an open run to cancel: its running steps are cancelled and it ends ``cancelled``."""
    run = await open_run(call)
    try:
        await run.handle.cancel(rpc_timeout=RPC_TIMEOUT)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise Conflict(f"run {run.id} is closed") from None
        raise
    return Action(id=run.id, action="cancel")


async def _update(call: Call[Any], name: str, arg: Any, step: str | None) -> Action:
    run = await open_run(call)
    handle = run.client.get_workflow_handle(run.described.id)  # whichever execution is latest
    try:
        ack: Ack = await handle.execute_update(name, arg, result_type=Ack, rpc_timeout=RPC_TIMEOUT)
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        message = cause.message if isinstance(cause, FailureError) else str(error)
        if isinstance(cause, ApplicationError) and cause.type == UNKNOWN_STEP:
            raise NotFound(f"run {run.id}: {message}") from None
        raise Conflict(f"run {run.id}: {message}") from None
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise Unavailable(
            f"run {run.id} did not answer in time (is a worker running?)", retry_after=RETRY_AFTER
        ) from None
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise Conflict(f"run {run.id} is closed") from None
        raise
    return Action(id=run.id, action=ack.action, step=ack.step or step)


async def rerun(call: Call[Rerun]) -> web.Response:
    """Rerun a closed failed run as a new run of the same version and input that reuses the
    outputs of the steps that succeeded (409 for open or completed runs)."""
    run = await find_run(call)
    if run.status not in RERUNNABLE:
        raise Conflict(
            f"run {run.id} is {run.status}; only failed, timed_out or cancelled runs rerun"
        )
    tenant = call.principal.tenant
    row = await repo.readable(call.session, tenant, run.definition)
    if not row.active:
        raise Conflict(f"definition {run.definition!r} is deactivated; activate it to rerun")
    client = await temporal_client(call)
    digest = request_hash({"rerun_of": run.id})
    new_key = call.input.key
    if new_key is not None:
        existing = await existing_run(client, workflow_id(tenant, run.definition, new_key), digest)
        if existing is not None:
            return json_response(existing, 200, Location=f"/v1/runs/{existing.id}")
    try:
        snapshot, started = await asyncio.gather(
            run.handle.query("snapshot", result_type=RunSnapshot, rpc_timeout=RPC_TIMEOUT),
            run.start_input(),
        )
    except WorkflowQueryFailedError as error:
        if not too_large(error):
            raise
        raise PayloadTooLarge(f"run {run.id}'s input and step outputs are {TOO_LARGE}") from None
    handle, created = await start_run(
        client,
        started.definition,
        snapshot.input,
        task_queue=call.request.app[keys.SETTINGS].task_queue,
        tenant=tenant,
        version=started.version,
        key=new_key,
        command=started.command,
        library=started.library,
        reuse=snapshot.steps,
        memo={REQUEST_HASH: digest, "rerun_of": run.id},
    )
    if not created:
        existing = await existing_run(client, handle.id, digest)
        assert existing is not None
        return json_response(existing, 200, Location=f"/v1/runs/{existing.id}")
    ref = started_ref(handle, started.version)
    return json_response(ref, 201, Location=f"/v1/runs/{ref.id}")


RUN = "/v1/runs/{definition}/{key}"
STEP = f"{RUN}/steps/{{step}}"

ROUTES: list[Route[Any, Any]] = [
    Route("POST", "/v1/runs", start_run_route, RunRef, RunStart, status=201, tag="runs",
          headers=((IDEMPOTENCY_HEADER, KEY_HEADER),)),
    Route("GET", "/v1/runs", list_runs, Page[RunSummary], RunQuery, tag="runs"),
    Route("GET", RUN, get_run, RunDetail, tag="runs"),
    Route("GET", f"{RUN}/trace", trace_run, RunTrace, tag="runs"),
    Route("POST", f"{RUN}/cancel", cancel_run, Action, status=202, tag="runs"),
    Route("POST", f"{RUN}/fail", fail_run, Action, Fail, tag="runs"),
    Route("POST", f"{RUN}/events", send_event, Action, Event, tag="runs"),
    Route("POST", f"{RUN}/rerun", rerun, RunRef, Rerun, status=201, tag="runs"),
    Route("POST", f"{STEP}/retry", retry_step, Action, Retry, tag="runs"),
    Route("POST", f"{STEP}/complete", complete_step, Action, Complete, tag="runs"),
    Route("POST", f"{STEP}/skip", skip_step, Action, tag="runs"),
    Route("GET", "/v1/errors", list_errors, StepErrors, ErrorQuery, tag="runs"),
]  # fmt: skip
"""Every runs route (tenant keys only)."""
