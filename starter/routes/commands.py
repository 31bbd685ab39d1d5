"""Commands: ``POST /v1/commands`` starts the runs bound to the command's type.

A command runs its bindings in one order: the instance's first, then the tenant's, each by
position and then creation. Every bound run is checked before any starts (definition,
version, input against its schema), so a command that fails a check starts nothing. Then the
runs start one after the other in that order, each under the run key ``<command id>`` (one
binding) or ``<command id>.<n>`` (several, ``n`` from 1 in start order), with ``DagCommand``
set to the command type. Then the command goes into the ledger with the runs it started.

A repeated id starts nothing: the ledger answers the first result (200 instead of 201). If a
request dies after starting runs and before the ledger write, its retry finds those runs by
their deterministic workflow ids (Temporal rejects a second start under an id) and records
them; the hash of the command in each run's memo refuses a retry with another payload.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from starter import keys
from starter.api.commands import Command, CommandRun, CommandSend, CommandType
from starter.api.common import Page
from starter.api.definitions import Scope
from starter.db.models import Binding, CommandRecord
from starter.errors import Conflict, FieldError, Invalid, NotFound
from starter.repos import bindings as binding_repo
from starter.repos import commands as ledger
from starter.routes.pagination import PageQuery, decode_cursor, one_page
from starter.routes.table import Call, Route, json_response
from starter.runs import check_stored_run, request_hash, start_stored_run


class CommandQuery(PageQuery):
    """Filters of the command list."""

    type: CommandType | None = Field(None, description="Only commands of this type.")


async def send_command(call: Call[CommandSend]) -> web.Response:
    """Start the runs bound to the command's type: the instance's bindings, then the tenant's.

    Answers 201 with the runs, or 200 with the first answer when the id was sent before.
    """
    body = call.input
    tenant = call.principal.tenant
    payload_hash = request_hash(body.payload)
    # Each database step below uses a short session of its own and the request's session is
    # never touched, so a command holds at most one connection at a time: holding the
    # request's connection while waiting for another exhausts the pool under load.
    sessions = call.request.app[keys.SESSIONS]
    async with sessions() as session:
        known = await ledger.find(session, tenant, body.id)
        if known is not None:
            return json_response(_repeat(known, body, payload_hash))
        bindings = await binding_repo.for_command(session, tenant, body.type)
        if not bindings:
            message = f"no binding for command type {body.type!r}"
            raise NotFound(message, errors=[FieldError(path="type", message=message)])
        versions = await _check(session, call, bindings)
    client = await call.request.app[keys.TEMPORAL].client()
    task_queue = call.request.app[keys.SETTINGS].task_queue
    memo = request_hash({"type": body.type, "id": body.id, "payload": body.payload})
    runs: list[CommandRun] = []
    for binding, version, key in zip(
        bindings, versions, run_keys(body.id, len(bindings)), strict=True
    ):
        try:
            async with sessions() as session:
                ref, started = await start_stored_run(
                    session,
                    client,
                    tenant,
                    binding.definition_name,
                    version=version,
                    input=body.payload,
                    key=key,
                    command=body.type,
                    task_queue=task_queue,
                    request=memo,
                    instance=binding.tenant_id is None,
                )
        except Invalid as error:
            if any(e.path == "idempotency_key" for e in error.errors):
                raise _key_in_use(error, body.id, key) from None
            raise _cannot_run(binding, error) from None
        except (NotFound, Conflict) as error:  # changed since the check
            raise _cannot_run(binding, error) from None
        run = {**ref.model_dump(), "created": started}
        runs.append(CommandRun(**run, scope=_scope(binding), binding=binding.id))
    stored = [run.model_dump(mode="json") for run in runs]
    try:
        async with sessions.begin() as session:
            row = await ledger.record(session, tenant, body.id, body.type, payload_hash, stored)
    except IntegrityError:  # a concurrent request with the same id recorded it first
        async with sessions() as session:
            known = await ledger.get(session, tenant, body.id)
        return json_response(_repeat(known, body, payload_hash))
    answer = command_model(row, created=True)
    return json_response(answer, 201, Location=f"/v1/commands/{body.id}")


async def get_command(call: Call[None]) -> Command:
    """A command in the ledger and the runs it started."""
    row = await ledger.get(call.session, call.principal.tenant, call.path("command_id"))
    return command_model(row)


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
    """The API model of a ledger entry."""
    return Command(
        id=row.command_id,
        type=row.type,
        payload_hash=row.payload_hash,
        created_at=row.created_at,
        created=created,
        runs=[CommandRun.model_validate(run) for run in row.runs],
    )


ROUTES: list[Route[Any, Any]] = [
    Route("POST", "/v1/commands", send_command, Command, CommandSend, status=201),
    Route("GET", "/v1/commands", list_commands, Page[Command], CommandQuery),
    Route("GET", "/v1/commands/{command_id}", get_command, Command),
]


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


async def _check(
    session: AsyncSession, call: Call[CommandSend], bindings: list[Binding]
) -> list[int]:
    """Check every bound run before any starts; the version each one pins.

    Raises:
        Invalid: Every way the payload breaks a bound definition's input schema.
        Conflict: A binding that cannot run (its definition is gone, deactivated, a template).
    """
    body = call.input
    versions: list[int] = []
    problems: list[FieldError] = []
    for binding in bindings:
        name = binding.definition_name
        try:
            checked = await check_stored_run(
                session,
                call.principal.tenant,
                name,
                version=binding.version,
                input=body.payload,
                instance=binding.tenant_id is None,
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
        versions.append(checked.version)
    if problems:
        raise Invalid(
            f"the payload breaks the input schema of a definition bound to {body.type!r}",
            errors=problems,
        )
    return versions


def _cannot_run(binding: Binding, error: Exception) -> Conflict:
    scope = _scope(binding)
    return Conflict(
        f"the {scope} binding {binding.id} of {binding.command_type!r} to "
        f"{binding.definition_name!r} cannot run: {error}"
    )


def _key_in_use(error: Invalid, command_id: str, key: str) -> Invalid:
    message = f"the run key {key!r} is in use by another request; send the command with a new id"
    return Invalid(
        f"command {command_id!r}: {error}", errors=[FieldError(path="id", message=message)]
    )


def _scope(binding: Binding) -> Scope:
    return "instance" if binding.tenant_id is None else "tenant"
