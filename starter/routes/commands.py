"""Commands: ``POST /v1/commands`` runs the runs bound to the command's type, in order.

A command runs its bindings in one order: the instance's first, then the tenant's, each by
position and then creation. Every bound run is checked before any starts (definition,
version, input against its schema), so a command that fails a check starts nothing. Each run
has the run key ``<command id>`` (one binding) or ``<command id>.<n>`` (several, ``n`` from 1
in order), the workflow id ``<tenant>/<definition>/<key>`` and ``DagCommand`` set to the
command type.

- One binding: its run starts at once, as ``POST /v1/runs`` would start it.
- Several: one ``DagCommand`` run (``<tenant>/command:<id>``, :mod:`workflows.command`) runs
  them one after another as child workflows, like the states of an AWS Step Functions
  sequence: a run starts only when the one before it completed. If one fails, is cancelled,
  times out or cannot start, the rest never start (``not_run``) and the command run fails with
  ``CommandFailed``. The pinned definitions go into the command run's input, so what was
  checked is what runs, however the store changes meanwhile.

Then the command goes into the ledger with its runs. A repeated id starts nothing: the ledger
answers the first result (200 instead of 201). If a request dies after starting and before the
ledger write, its retry finds what it started by the deterministic workflow ids (Temporal
rejects a second start under an id): the single run, or the command run, whose memo holds the
plan, so the retry answers the same runs without a worker. The hash of the command in the
memo refuses a retry with another payload. ``GET /v1/commands/{id}`` answers each run's live
state from the command run's ``runs`` query (or by describing the runs).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, NamedTuple

from aiohttp import web
from pydantic import Field
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from starter import keys
from starter.api.commands import Command, CommandRun, CommandSend, CommandType
from starter.api.common import Page
from starter.api.definitions import Scope
from starter.cache import VersionCache
from starter.db.models import Binding, CommandRecord
from starter.errors import Conflict, FieldError, Invalid, NotFound
from starter.launch import RUN_TIMEOUT_MARGIN, workflow_id
from starter.metrics import phase, phases, timed
from starter.repos import bindings as binding_repo
from starter.repos import commands as ledger
from starter.routes.pagination import PageQuery, decode_cursor, one_page
from starter.routes.runs import run_status
from starter.routes.table import Call, Route, json_response
from starter.runs import (
    REQUEST_HASH,
    CheckedRun,
    check_run,
    request_hash,
    start_checked_run,
)
from workflows.command import command_summary, command_workflow_id
from workflows.scheduling import tenant_priority
from workflows.search_attributes import DAG_COMMAND, DAG_STATUS, TENANT_ID
from workflows.types import (
    COMMAND_WORKFLOW_TYPE,
    DAG_STATUS_VALUES,
    CommandProgress,
    CommandRunStatus,
    DagCommandInput,
    DagRunInput,
    PlannedRun,
    RunStatus,
)

PLAN = "plan"
"""The memo field of a command run that lists its runs (workflow id, definition, version,
scope, binding), so a retry answers them without a worker."""
RPC_TIMEOUT = timedelta(seconds=5)
"""How long the ``runs`` query of a command run may take before the runs are described."""


class BoundRun(NamedTuple):
    """A binding of the command's type and its checked run."""

    binding: Binding
    run: CheckedRun


class CommandQuery(PageQuery):
    """Filters of the command list."""

    type: CommandType | None = Field(None, description="Only commands of this type.")


async def send_command(call: Call[CommandSend]) -> web.Response:
    """Run the runs bound to the command's type: the instance's bindings, then the tenant's.

    Answers 201 with the runs, or 200 with the first answer when the id was sent before.
    """
    body = call.input
    request = call.request
    tenant = call.principal.tenant
    payload_hash = request_hash(body.payload)
    versions = request.app[keys.VERSIONS]
    spent: dict[str, float] = {}

    def look_up(connection: Connection) -> tuple[CommandRecord | None, list[BoundRun]]:
        """The ledger entry of the id, else the checked runs of the type's bindings."""
        with timed(spent, "ledger_lookup"):
            known = ledger.lookup(connection, tenant, body.id)
        if known is not None:
            return known, []
        with timed(spent, "bindings"):
            bindings = binding_repo.for_command(connection, tenant, body.type)
        with timed(spent, "definitions"):
            return None, _check(connection, tenant, body, bindings, versions)

    # The database work runs in two short units (:mod:`starter.db.runner`), before and after
    # the start; the request's session is never used, so a command holds no connection while
    # Temporal starts its run, and at most one at any time.
    runner = request.app[keys.DB_RUNNER]
    try:
        with phase(request, "db_queue"):
            known, bound = await runner.read(look_up)
    finally:  # the unit's own steps, and the rest of its time as waiting for it to run
        request_phases = phases(request)
        request_phases.update(spent)
        request_phases["db_queue"] -= sum(spent.values())
    if known is not None:
        return json_response(_repeat(known, body, payload_hash))
    if not bound:
        message = f"no binding for command type {body.type!r}"
        raise NotFound(message, errors=[FieldError(path="type", message=message)])
    client = await request.app[keys.TEMPORAL].client()
    memo = request_hash({"type": body.type, "id": body.id, "payload": body.payload})
    with phase(request, "temporal_start"):
        if len(bound) == 1:
            runs = [await _start_one(call, client, bound[0], memo)]
        else:
            runs = await _start_in_order(call, client, bound, memo)
    stored = [run.model_dump(mode="json") for run in runs]
    try:
        with phase(request, "ledger_write"):
            row = await runner.write(
                lambda c: ledger.add(c, tenant, body.id, body.type, payload_hash, stored)
            )
    except IntegrityError:  # a concurrent request with the same id recorded it first
        known = await runner.read(lambda c: ledger.lookup(c, tenant, body.id))
        if known is None:
            raise
        return json_response(_repeat(known, body, payload_hash))
    answer = command_model(row, created=True)
    return json_response(answer, 201, Location=f"/v1/commands/{body.id}")


async def _start_one(
    call: Call[CommandSend], client: Client, bound: BoundRun, memo: str
) -> CommandRun:
    """Start the checked run of a command type's one binding, under the command id (or find
    the run a retry of the command started before)."""
    body = call.input
    binding = bound.binding
    try:
        ref, started = await start_checked_run(
            client,
            bound.run,
            call.principal.tenant,
            input=body.payload,
            key=body.id,
            command=body.type,
            task_queue=call.request.app[keys.SETTINGS].task_queue,
            request=memo,
        )
    except Invalid as error:  # the key's run holds another request
        raise _key_in_use(str(error), body.id, body.id) from None
    run = {**ref.model_dump(), "created": started}
    answer = CommandRun(**run, scope=_scope(binding), binding=binding.id, status="running")
    if not started:  # a retry after a lost ledger write: the run may have closed since
        [answer] = await _described_runs(client, [answer], None)
    return answer


async def _start_in_order(
    call: Call[CommandSend],
    client: Client,
    bound: list[BoundRun],
    memo: str,
) -> list[CommandRun]:
    """Start the ``DagCommand`` run that runs the bound runs in order (or find it).

    Raises:
        Invalid: At ``id``: the command run holds another command (another payload), or a
            run key is in use by a run that is not this command's.
    """
    body = call.input
    tenant = call.principal.tenant
    wid = command_workflow_id(tenant, body.id)
    plan = [
        PlannedRun(
            workflow_id=workflow_id(tenant, binding.definition_name, key),
            scope=_scope(binding),
            binding=binding.id,
            run=DagRunInput(
                definition=run.definition,
                tenant=tenant,
                version=run.version,
                command=body.type,
                library=run.library,
            ),
            execution_timeout=run.definition.timeout + RUN_TIMEOUT_MARGIN
            if run.definition.timeout
            else None,
            memo={REQUEST_HASH: memo},
        )
        for (binding, run), key in zip(bound, run_keys(body.id, len(bound)), strict=True)
    ]
    found = await _started_command(client, wid, memo, body.id)
    if found is not None:
        return found
    await asyncio.gather(*(_refuse_key_in_use(client, p.workflow_id, wid, body.id) for p in plan))
    summary = [
        {
            "workflow_id": p.workflow_id,
            "definition": p.run.definition.name,
            "version": p.run.version,
            "scope": p.scope,
            "binding": p.binding,
        }
        for p in plan
    ]
    try:
        await client.start_workflow(
            COMMAND_WORKFLOW_TYPE,
            DagCommandInput(
                tenant=tenant, type=body.type, id=body.id, input=body.payload, runs=plan
            ),
            id=wid,
            task_queue=call.request.app[keys.SETTINGS].task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(TENANT_ID, tenant),
                    SearchAttributePair(DAG_COMMAND, body.type),
                    SearchAttributePair(DAG_STATUS, DAG_STATUS_VALUES[RunStatus.RUNNING]),
                ]
            ),
            static_summary=command_summary(tenant, body.type, body.id),
            memo={REQUEST_HASH: memo, PLAN: summary},
            priority=tenant_priority(tenant),
        )
    except WorkflowAlreadyStartedError:  # a concurrent request with the same id started it
        found = await _started_command(client, wid, memo, body.id)
        if found is None:
            raise
        return found
    return [
        _planned_run(entry, created=True, status="running" if n == 0 else "pending")
        for n, entry in enumerate(summary)
    ]


async def _started_command(
    client: Client, wid: str, memo: str, command_id: str
) -> list[CommandRun] | None:
    """The runs of the command run ``wid`` from its memo, if it was started, with their states
    as Temporal describes them (no worker needed).

    Raises:
        Invalid: At ``id``, if the command run was started for another command.
    """
    try:
        described = await client.get_workflow_handle(wid).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if await described.memo_value(REQUEST_HASH, None) != memo:
        message = f"command {command_id!r} was started with another payload; use a new id"
        raise Invalid(
            f"the command run {wid} holds another command",
            errors=[FieldError(path="id", message=message)],
        )
    entries = await described.memo_value(PLAN, [])
    runs = [_planned_run(entry, created=False, status="pending") for entry in entries]
    is_open = described.status == WorkflowExecutionStatus.RUNNING
    return await _described_runs(client, runs, is_open)


async def _refuse_key_in_use(
    client: Client, run_wid: str, command_wid: str, command_id: str
) -> None:
    """Refuse a planned run whose workflow id is in use by a run this command did not start.

    Raises:
        Invalid: At ``id``.
    """
    try:
        described = await client.get_workflow_handle(run_wid).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return
        raise
    if described.parent_id != command_wid:  # else a concurrent request's command run started it
        raise _key_in_use(
            f"the workflow id {run_wid} is in use", command_id, run_wid.rsplit("/", 1)[-1]
        )


def _planned_run(entry: dict[str, Any], *, created: bool, status: str) -> CommandRun:
    wid = entry["workflow_id"]
    _, definition, key = wid.split("/", 2)
    return CommandRun.model_validate(
        {
            "id": f"{definition}/{key}",
            "definition": definition,
            "key": key,
            "version": entry["version"],
            "workflow_id": wid,
            "run_id": None,
            "created": created,
            "scope": entry["scope"],
            "binding": entry["binding"],
            "status": status,
        }
    )


async def get_command(call: Call[None]) -> Command:
    """A command in the ledger and its runs, each with its live status."""
    # A short session, so the request holds no connection while Temporal answers.
    async with call.request.app[keys.SESSIONS]() as session:
        row = await ledger.get(session, call.principal.tenant, call.path("command_id"))
    command = command_model(row)
    client = await call.request.app[keys.TEMPORAL].client()
    return command.model_copy(update={"runs": await _live_runs(client, command)})


async def list_commands(call: Call[CommandQuery]) -> Page[Command]:
    """The tenant's commands, newest first."""
    query = call.input
    after = decode_cursor(query.cursor, int)
    rows = await ledger.list_commands(
        call.session,
        call.principal.tenant,
        limit=query.limit + 1,
        after=after[0] if after else None,
        command_type=query.type,
    )
    page, cursor = one_page(rows, query.limit, lambda row: (row.id,))
    return Page[Command](items=[command_model(row) for row in page], next_cursor=cursor)


def run_keys(command_id: str, count: int) -> list[str]:
    """The run keys of a command's runs, in start order."""
    if count == 1:
        return [command_id]
    return [f"{command_id}.{n}" for n in range(1, count + 1)]


def command_model(row: CommandRecord, *, created: bool = False) -> Command:
    """The API model of a ledger entry (its runs as they were when it was accepted)."""
    runs = [CommandRun.model_validate(run) for run in row.runs]
    # Commands with several runs recorded with statuses have a command run; older ones
    # (recorded before DagCommand existed, without statuses) started their runs directly.
    ordered = len(runs) > 1 and all(run.status is not None for run in runs)
    return Command(
        id=row.command_id,
        type=row.type,
        payload_hash=row.payload_hash,
        created_at=row.created_at,
        created=created,
        workflow_id=command_workflow_id(row.tenant_id, row.command_id) if ordered else None,
        runs=runs,
    )


async def _live_runs(client: Client, command: Command) -> list[CommandRun]:
    """The command's runs with their live status: from the command run's ``runs`` query, or,
    when it does not answer in time (no worker) or there is none, by describing the runs."""
    if command.workflow_id is None:
        return await _described_runs(client, command.runs, None)
    handle = client.get_workflow_handle(command.workflow_id)
    try:
        progress: CommandProgress = await handle.query(
            "runs", result_type=CommandProgress, rpc_timeout=RPC_TIMEOUT
        )
    except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
        try:
            described = await handle.describe(rpc_timeout=RPC_TIMEOUT)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            return await _described_runs(client, command.runs, None)
        is_open = described.status == WorkflowExecutionStatus.RUNNING
        return await _described_runs(client, command.runs, is_open)
    states = {state.workflow_id: state for state in progress.runs}
    live = []
    for run in command.runs:
        state = states.get(run.workflow_id)
        if state is None:
            live.append(run)
            continue
        update = {"status": state.status.value, "error": state.error}
        live.append(run.model_copy(update=update | {"run_id": state.run_id or run.run_id}))
    return live


async def _described_runs(
    client: Client, runs: list[CommandRun], command_open: bool | None
) -> list[CommandRun]:
    """The runs with the status Temporal describes (no worker needed). A run that does not
    exist is ``pending`` while its command run is open, else ``not_run``; without a command
    run (``command_open`` None) it keeps the status it has."""

    async def one(run: CommandRun) -> CommandRun:
        try:
            described = await client.get_workflow_handle(run.workflow_id).describe(
                rpc_timeout=RPC_TIMEOUT
            )
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            if command_open is None:
                return run
            status = CommandRunStatus.PENDING if command_open else CommandRunStatus.NOT_RUN
            return run.model_copy(update={"status": status.value})
        status = _command_status(run_status(described.status, described.typed_search_attributes))
        return run.model_copy(update={"status": status.value, "run_id": described.run_id})

    return list(await asyncio.gather(*(one(run) for run in runs)))


def _command_status(status: RunStatus) -> CommandRunStatus:
    """A run's status as one of a command's runs: open runs are ``running``."""
    if status in (RunStatus.WAITING, RunStatus.NEEDS_ATTENTION):
        return CommandRunStatus.RUNNING
    return CommandRunStatus(status.value)


SEND_ERRORS = (
    (404, "No binding for the command type; the problem names it (at `type`)."),
    (409, "A binding cannot run: its definition is deactivated or gone, its pinned version is "
     "gone, or it is a template. Nothing starts."),
    (422, "The payload breaks a bound definition's input schema (at `payload.<path>`, naming "
     "the definition); or the id was sent before with another type or payload (at `type`, "
     "`payload`); or its run keys are in use by another request or payload (at `id`). "
     "Nothing starts."),
)  # fmt: skip
"""What ``POST /v1/commands`` answers when it starts nothing, for OpenAPI."""

ROUTES: list[Route[Any, Any]] = [
    Route("POST", "/v1/commands", send_command, Command, CommandSend, status=201,
          errors=SEND_ERRORS),
    Route("GET", "/v1/commands", list_commands, Page[Command], CommandQuery),
    Route("GET", "/v1/commands/{command_id}", get_command, Command),
]  # fmt: skip


def _repeat(row: CommandRecord, body: CommandSend, payload_hash: str) -> Command:
    """The first answer to a command id, if the repeat is the same command."""
    errors = []
    if row.type != body.type:
        message = f"command {body.id!r} was sent with type {row.type!r}; use a new id"
        errors.append(FieldError(path="type", message=message))
    if row.payload_hash != payload_hash:
        message = f"command {body.id!r} was sent with another payload; use a new id"
        errors.append(FieldError(path="payload", message=message))
    if errors:
        raise Invalid(f"command {body.id!r} was sent before as another command", errors=errors)
    return command_model(row)


def _check(
    connection: Connection,
    tenant: str,
    body: CommandSend,
    bindings: list[Binding],
    versions: VersionCache,
) -> list[BoundRun]:
    """Check every bound run before any starts; the pinned definition and library of each.

    Raises:
        Invalid: Every way the payload breaks a bound definition's input schema.
        Conflict: A binding that cannot run (its definition is gone, deactivated, a template).
    """
    runs: list[BoundRun] = []
    problems: list[FieldError] = []
    for binding in bindings:
        name = binding.definition_name
        try:
            checked = check_run(
                connection,
                tenant,
                name,
                version=binding.version,
                input=body.payload,
                instance=binding.tenant_id is None,
                versions=versions,
            )
        except Invalid as error:
            payload = [e for e in error.errors if e.path.startswith("input")]
            if not payload or len(payload) != len(error.errors):
                raise _cannot_run(binding, error) from None
            problems.extend(
                FieldError(path="payload" + e.path[len("input") :], message=f"{name}: {e.message}")
                for e in payload
            )
            continue
        except (NotFound, Conflict) as error:
            raise _cannot_run(binding, error) from None
        runs.append(BoundRun(binding, checked))
    if problems:
        raise Invalid(
            f"the payload breaks the input schema of a definition bound to {body.type!r}",
            errors=problems,
        )
    return runs


def _cannot_run(binding: Binding, error: Exception) -> Conflict:
    scope = _scope(binding)
    return Conflict(
        f"the {scope} binding {binding.id} of {binding.command_type!r} to "
        f"{binding.definition_name!r} cannot run: {error}"
    )


def _key_in_use(reason: str, command_id: str, key: str) -> Invalid:
    message = f"the run key {key!r} is in use by another request; send the command with a new id"
    return Invalid(
        f"command {command_id!r}: {reason}", errors=[FieldError(path="id", message=message)]
    )


def _scope(binding: Binding) -> Scope:
    return "instance" if binding.tenant_id is None else "tenant"
