"""Starting runs of stored definitions: the one path the runs routes and commands share.

A stored run resolves its definition from the store (the tenant's own, else the instance's),
pins a version, checks the input against the definition's ``input`` schema, gathers the
definitions its ``workflow`` steps run (transitively) into the run's library, and starts
``DagRun`` under the workflow id ``<tenant>/<definition>/<key>``. The request's hash is kept
in the workflow's memo (``request_hash``), so a repeated key with a different request is told
apart from a plain repeat.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from starter.api.runs import RUN_KEY_PATTERN, RunRef
from starter.cache import VersionCache
from starter.db.models import StoredDefinition
from starter.errors import Conflict, FieldError, Invalid, NotFound
from starter.inputs import input_violations
from starter.launch import start_run, workflow_id, workflow_key
from starter.repos import definitions as repo
from workflows.definition import Definition
from workflows.search_attributes import DAG_VERSION
from workflows.types import StepRecord

REQUEST_HASH = "request_hash"
"""The memo field that holds the sha256 of the canonical request that started a run."""


def request_hash(request: Any) -> str:
    """The sha256 of a request as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def start_stored_run(
    session: AsyncSession,
    temporal_client: Client,
    owner: str,
    name: str,
    *,
    version: int | None,
    input: Any,
    key: str | None,
    command: str | None,
    task_queue: str,
    request: str | None = None,
    reuse: dict[str, StepRecord] | None = None,
    instance: bool = False,
    versions: VersionCache | None = None,
) -> tuple[RunRef, bool]:
    """Start a run of the tenant's definition ``name``, or find the run under the same key.

    A key in use answers its run as it is, without checking the definition or the input again
    (a repeat of a request answers what the first one started).

    Args:
        session: The request's session.
        temporal_client: The service's Temporal client.
        owner: The tenant the run belongs to.
        name: The definition's name (the tenant's own, else the instance's).
        version: The version to pin; None for the current one.
        input: The run's input, checked against the definition's ``input`` schema.
        key: The run key (idempotency key or command id); None for a random one.
        command: The type of the command the run answers, if any (``DagCommand``).
        task_queue: The task queue of ``DagRun``.
        request: The hash of the request (:func:`request_hash`), kept in the memo; when the
            key is in use by a run started with another hash, the request is refused.
        reuse: A rerun's step records from an earlier run.
        instance: Run the instance's definition ``name`` even if the tenant has one of that
            name (instance bindings of commands); see :func:`check_stored_run`.
        versions: Parsed versions already read (the service's cache), if any.

    Returns:
        The run and whether this call started it (False: the key was in use).

    Raises:
        NotFound: No such definition for the tenant, or no such version.
        Conflict: The definition is deactivated (or a ``workflow`` step's definition is).
        Invalid: A template, input that breaks the schema (every violation with its path),
            a ``workflow`` step whose definition is missing, or a key reused by another request.
    """
    if key is not None:
        if not re.match(RUN_KEY_PATTERN, key):
            message = f"bad run key {key!r}: must match {RUN_KEY_PATTERN.strip('^$')}"
            raise Invalid(message, errors=[FieldError(path="key", message=message)])
        existing = await existing_run(temporal_client, workflow_id(owner, name, key), request)
        if existing is not None:
            return existing, False
    checked = await check_stored_run(
        session, owner, name, version=version, input=input, instance=instance, versions=versions
    )
    return await start_checked_run(
        temporal_client,
        checked,
        owner,
        input=input,
        key=key,
        command=command,
        task_queue=task_queue,
        request=request,
        reuse=reuse,
    )


async def start_checked_run(
    temporal_client: Client,
    checked: CheckedRun,
    owner: str,
    *,
    input: Any,
    key: str | None,
    command: str | None,
    task_queue: str,
    request: str | None = None,
    reuse: dict[str, StepRecord] | None = None,
) -> tuple[RunRef, bool]:
    """Start a run that :func:`check_stored_run` checked, or find the run under its key.

    It needs no database: what was checked is what starts. Temporal refuses a second run under
    a workflow id, so a key in use is found by trying: the run under it is described only then.

    Returns:
        The run and whether this call started it (False: the key was in use).

    Raises:
        Invalid: At ``idempotency_key``, if the key's run was started by a request with another
            hash than ``request``.
    """
    handle, started = await start_run(
        temporal_client,
        checked.definition,
        input,
        task_queue=task_queue,
        tenant=owner,
        version=checked.version,
        key=key,
        command=command,
        library=checked.library,
        reuse=reuse,
        memo={REQUEST_HASH: request} if request is not None else None,
    )
    if not started:
        existing = await existing_run(temporal_client, handle.id, request)
        assert existing is not None, "a run that is already started exists"
        return existing, False
    return started_ref(handle, checked.version), True


def started_ref(handle: WorkflowHandle[Any, Any], version: int) -> RunRef:
    """The reference of a run this call just started (workflow id ``tenant/definition/key``)."""
    _, definition, key = handle.id.split("/", 2)
    return RunRef(
        id=f"{definition}/{key}",
        definition=definition,
        key=key,
        version=version,
        workflow_id=handle.id,
        run_id=handle.first_execution_run_id or handle.run_id,
        created=True,
    )


@dataclass(frozen=True)
class CheckedRun:
    """A stored run that may start: the pinned definition and its library."""

    definition: Definition
    version: int
    library: dict[str, Definition]


async def check_stored_run(
    session: AsyncSession,
    owner: str,
    name: str,
    *,
    version: int | None,
    input: Any,
    instance: bool = False,
    versions: VersionCache | None = None,
) -> CheckedRun:
    """Everything :func:`start_stored_run` checks before it starts a run; starts nothing.

    :func:`check_run` on the session's connection.
    """

    def check(sync: Session) -> CheckedRun:
        return check_run(
            sync.connection(),
            owner,
            name,
            version=version,
            input=input,
            instance=instance,
            versions=versions,
        )

    return await session.run_sync(check)


def check_run(
    connection: Connection,
    owner: str,
    name: str,
    *,
    version: int | None,
    input: Any,
    instance: bool = False,
    versions: VersionCache | None = None,
) -> CheckedRun:
    """Everything :func:`start_stored_run` checks before it starts a run, on a synchronous
    connection (the hot path runs it in one unit, :mod:`starter.db.runner`).

    Args:
        connection: A connection to the service's database.
        owner: The tenant the run would belong to.
        name: The definition's name (the tenant's own, else the instance's).
        version: The version to pin; None for the current one.
        input: The run's input, checked against the definition's ``input`` schema.
        instance: Resolve ``name``, and the definitions its ``workflow`` steps run, among
            the instance's definitions only, so that a tenant's definition of the same
            name cannot stand in for an instance one.
        versions: Parsed versions already read (the service's cache), if any; the
            definitions themselves (current version, active) are read every time.

    Raises:
        NotFound, Conflict, Invalid: As :func:`start_stored_run`.
    """
    scope = None if instance else owner
    row = repo.readable_row(connection, scope, name)
    pinned = version if version is not None else row.current_version
    definition = _runnable(connection, row, pinned, versions)
    problems = input_violations(definition, input)
    if problems:
        count = len(problems)
        raise Invalid(
            f"the input breaks the input schema of {name!r} "
            f"({count} problem{'s' if count != 1 else ''})",
            errors=problems,
        )
    library = resolve_library(connection, scope, definition, versions)
    return CheckedRun(definition, pinned, library)


def resolve_library(
    connection: Connection,
    owner: str | None,
    definition: Definition,
    versions: VersionCache | None = None,
) -> dict[str, Definition]:
    """The definitions ``workflow`` steps run, transitively, by the reference as written.

    ``name`` is the current version of the definition the tenant reads under that name,
    ``name@N`` its version N.

    Raises:
        Invalid: If a referenced definition (or version) is missing, or is a template;
            the error names the step.
        Conflict: If a referenced definition is deactivated.
    """
    library: dict[str, Definition] = {}
    todo = [(definition.name, sid, ref) for sid, ref in _child_refs(definition)]
    while todo:
        parent, sid, ref = todo.pop()
        if ref in library:
            continue
        name, _, number = ref.partition("@")
        path = f"steps.{sid}.with.definition"
        where = f"step {sid!r} of {parent!r}"
        try:
            row = repo.readable_row(connection, owner, name)
            pinned = int(number) if number else row.current_version
            child = _runnable(connection, row, pinned, versions)
        except ValueError:
            message = f"{where} names {ref!r}: the version is not a number"
            raise Invalid(message, errors=[FieldError(path=path, message=message)]) from None
        except (NotFound, Invalid) as error:
            message = f"{where} runs {ref!r}: {error}"
            raise Invalid(message, errors=[FieldError(path=path, message=message)]) from None
        except Conflict as error:
            raise Conflict(f"{where} runs {ref!r}: {error}") from None
        library[ref] = child
        todo.extend((child.name, csid, cref) for csid, cref in _child_refs(child))
    return library


def _runnable(
    connection: Connection, row: StoredDefinition, number: int, versions: VersionCache | None
) -> Definition:
    """The pinned version of a definition that may run."""
    if not row.active:
        raise Conflict(f"definition {row.name!r} is deactivated; activate it to run it")
    if row.is_template:
        raise Invalid(
            f"{row.name!r} is a template; instantiate it (POST /v1/templates/{row.name}/"
            "instantiate) and run the definition it makes"
        )
    definition = versions.get(row.id, number) if versions is not None else None
    if definition is None:
        definition = Definition.model_validate(repo.version_content(connection, row, number))
        if versions is not None:
            versions.put(row.id, number, definition)
    if definition.params:
        raise Invalid(f"version {number} of {row.name!r} is a template; it cannot run")
    return definition


def _child_refs(definition: Definition) -> list[tuple[str, str]]:
    return [
        (sid, str(step.with_.get("definition")))
        for sid, step in definition.steps.items()
        if step.uses == "workflow"
    ]


async def existing_run(client: Client, wid: str, request: str | None) -> RunRef | None:
    """The run under ``wid``, if there is one.

    Raises:
        Invalid: If it was started by a request with another hash than ``request``.
    """
    try:
        described = await client.get_workflow_handle(wid).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if request is not None and await _memo_hash(described) != request:
        key = workflow_key(wid)
        message = f"the key {key!r} was used for a different request; use a new key"
        raise Invalid(message, errors=[FieldError(path="idempotency_key", message=message)])
    return ref_of(described)


async def _memo_hash(described: WorkflowExecutionDescription) -> str | None:
    value = await described.memo_value(REQUEST_HASH, None)
    return value if isinstance(value, str) else None


def ref_of(described: WorkflowExecutionDescription) -> RunRef:
    """The :class:`RunRef` of a described run (its version from ``DagVersion``)."""
    _, definition, key = described.id.split("/", 2)
    return RunRef(
        id=f"{definition}/{key}",
        definition=definition,
        key=key,
        version=described.typed_search_attributes.get(DAG_VERSION) or 0,
        workflow_id=described.id,
        run_id=described.run_id,
    )
