"""Bindings and commands: bound runs run in order (instance first, each after the one before
completed), once per command id, per tenant."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.service import RPCError, RPCStatusCode

from starter.api.commands import Command
from starter.client import DagflowClient
from starter.db.engine import create_engine
from starter.errors import Conflict, Forbidden, Invalid, NotFound
from starter.routes.runs import runs_query
from tests.engine import dag_worker, eventually
from tests.starter import Databases, Starter, running, service_settings
from workflows.search_attributes import DAG_COMMAND, DAG_NAME, DAG_STATUS, DAG_VERSION, TENANT_ID
from workflows.types import COMMAND_FAILED, COMMAND_WORKFLOW_TYPE

ORDER_CREATED = "order.created"


def echo(name: str, who: str, **extra: Any) -> dict[str, Any]:
    """A definition whose output says who ran and with which input."""
    return {
        "name": name,
        "steps": {"a": {"uses": "transform", "with": {"value": f'${{{{ {{"who": "{who}"}} }}}}'}}},
        "output": '${{ {"who": steps.a.output.who, "input": input} }}',
        **extra,
    }


@pytest.fixture
async def service(
    databases: Databases, temporal_address: str, client: Client
) -> AsyncIterator[Starter]:
    """The service with a worker on its task queue, so the runs it starts run."""
    task_queue = f"tq-{uuid.uuid4()}"
    settings = service_settings(await databases.fresh(), temporal_address, task_queue=task_queue)
    async with dag_worker(client, task_queue=task_queue), running(settings) as starter:
        yield starter


async def post(client: DagflowClient, path: str, body: Any) -> tuple[int, Any]:
    """Status and JSON answer of a raw POST (to see 200 against 201)."""
    headers = {"Authorization": f"Bearer {client.api_key}"}
    url = client.base_url + path
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as a:
        return a.status, await a.json()


def new_tenant_id() -> str:
    """A tenant id no other test uses (workflow ids and visibility are shared by tests)."""
    return f"t-{uuid.uuid4().hex[:10]}"


def waits(name: str, seconds: float) -> dict[str, Any]:
    """A definition that takes ``seconds`` (a ``wait`` step)."""
    return {"name": name, "steps": {"w": {"uses": "wait", "with": {"duration": f"{seconds}s"}}}}


def fails(name: str) -> dict[str, Any]:
    """A definition whose run fails (a ``validate`` step that cannot pass)."""
    check = {"uses": "validate", "with": {"value": 1, "schema": {"type": "string"}}}
    return {"name": name, "steps": {"check": check}}


async def command_runs(client: Client, tenant: str, command_type: str) -> list[str]:
    """Workflow ids of the tenant's runs (DagRun) of a command type, from visibility."""
    query = f"TenantId = '{tenant}' AND DagCommand = '{command_type}' AND WorkflowType = 'DagRun'"
    return sorted([run.id async for run in client.list_workflows(query)])


async def statuses(acme: DagflowClient, command_id: str) -> list[str | None]:
    """The live status of each of a command's runs (GET /v1/commands/{id})."""
    return [run.status for run in (await acme.commands.get(command_id)).runs]


async def until_statuses(acme: DagflowClient, command_id: str, wanted: list[str]) -> None:
    """Wait until the command's runs have these statuses."""

    async def reached() -> bool:
        return await statuses(acme, command_id) == wanted

    await eventually(reached, within=20)


# --- bindings ------------------------------------------------------------------------------


async def test_bindings_at_both_scopes(starter: Starter) -> None:
    admin = starter.instance()
    await admin.instance.definitions.create(echo("audit", "instance"))
    acme = await starter.tenant("acme")
    await acme.definitions.create(echo("ship", "tenant"))
    await acme.definitions.create(echo("bill", "tenant"))

    audit = await admin.instance.bindings.create(ORDER_CREATED, "audit")
    assert (audit.scope, audit.type, audit.definition, audit.version, audit.position) == (
        "instance",
        ORDER_CREATED,
        "audit",
        None,
        0,
    )
    ship = await acme.bindings.create(ORDER_CREATED, "ship", version=1)
    bill = await acme.bindings.create(ORDER_CREATED, "bill")
    early = await acme.bindings.create("order.paid", "audit", position=7)  # an instance def
    assert (ship.scope, ship.version, ship.position, bill.position) == ("tenant", 1, 0, 1)

    listed = await acme.bindings.list()
    assert [(b.type, b.scope, b.definition) for b in listed.items] == [
        (ORDER_CREATED, "instance", "audit"),
        (ORDER_CREATED, "tenant", "ship"),
        (ORDER_CREATED, "tenant", "bill"),
        ("order.paid", "tenant", "audit"),
    ]
    paged = [b.id async for b in acme.bindings.iterate(limit=1)]
    assert paged == [b.id for b in listed.items]
    own = await acme.bindings.list(scope="tenant", type=ORDER_CREATED)
    assert [b.id for b in own.items] == [ship.id, bill.id]
    assert [b.id for b in (await acme.bindings.list(scope="instance")).items] == [audit.id]
    assert [b.id for b in (await admin.instance.bindings.list()).items] == [audit.id]

    assert await acme.bindings.get(audit.id) == audit  # tenants read instance bindings
    assert await acme.bindings.get(early.id) == early
    assert await acme.bindings.delete(bill.id) == bill
    with pytest.raises(NotFound):
        await acme.bindings.get(bill.id)
    with pytest.raises(NotFound):
        await admin.instance.bindings.get(ship.id)  # the instance scope has only its own
    with pytest.raises(Conflict):
        await acme.bindings.create(ORDER_CREATED, "ship")
    assert await admin.instance.bindings.delete(audit.id) == audit
    assert [b.id for b in (await acme.bindings.list()).items] == [ship.id, early.id]


async def test_tenants_cannot_remove_or_change_instance_bindings(starter: Starter) -> None:
    admin = starter.instance()
    await admin.instance.definitions.create(echo("audit", "instance"))
    audit = await admin.instance.bindings.create(ORDER_CREATED, "audit")
    acme = await starter.tenant()
    with pytest.raises(Forbidden) as denied:
        await acme.bindings.delete(audit.id)
    assert "instance" in (denied.value.problem.detail or "")
    with pytest.raises(Forbidden):
        await acme.instance.bindings.create("order.paid", "audit")
    with pytest.raises(Forbidden):
        await acme.instance.bindings.delete(audit.id)
    with pytest.raises(Forbidden):
        await admin.bindings.create("order.paid", "audit")  # instance keys use /v1/instance
    assert await acme.bindings.get(audit.id) == audit


async def test_a_binding_names_a_definition_its_scope_can_run(starter: Starter) -> None:
    admin = starter.instance()
    acme = await starter.tenant()
    other = await starter.tenant()
    await other.definitions.create(echo("theirs", "other"))
    await acme.definitions.create(echo("mine", "tenant"))
    template = {**echo("tpl", "x"), "params": {"team": {"type": "string"}}}
    await acme.definitions.create(template)

    for definition, version, path in (
        ("missing", None, "definition"),
        ("theirs", None, "definition"),  # another tenant's
        ("mine", 2, "version"),
        ("tpl", None, "definition"),
    ):
        with pytest.raises(Invalid) as error:
            await acme.bindings.create(ORDER_CREATED, definition, version=version)
        assert [e.path for e in error.value.errors] == [path], definition
    with pytest.raises(Invalid) as error:  # the instance runs only instance definitions
        await admin.instance.bindings.create(ORDER_CREATED, "mine")
    assert error.value.errors[0].path == "definition"
    assert (await acme.bindings.list()).items == []


# --- commands -----------------------------------------------------------------------------


async def test_a_command_runs_the_instance_runs_then_the_tenants_one_after_another(
    service: Starter, client: Client
) -> None:
    admin = service.instance()
    await admin.instance.definitions.create(echo("audit", "instance"))
    await admin.instance.definitions.create(echo("screen", "instance"))
    await admin.instance.bindings.create(ORDER_CREATED, "screen", position=5)
    await admin.instance.bindings.create(ORDER_CREATED, "audit", position=1)
    tenant = new_tenant_id()
    acme = await service.tenant(tenant)
    # the tenant's own "audit" must not replace the instance's in the instance binding
    await acme.definitions.create(echo("audit", "tenant"))
    await acme.definitions.create(echo("ship", "tenant"))
    await acme.bindings.create(ORDER_CREATED, "ship")
    await acme.bindings.create(ORDER_CREATED, "audit")

    status, answer = await post(
        acme, "/v1/commands", {"type": ORDER_CREATED, "id": "c-1", "payload": {"order": 7}}
    )
    assert status == 201
    sent = Command.model_validate(answer)
    assert (sent.id, sent.type, sent.created) == ("c-1", ORDER_CREATED, True)
    assert sent.workflow_id == f"{tenant}/command:c-1"
    assert [(r.scope, r.definition, r.key, r.created, r.status) for r in sent.runs] == [
        ("instance", "audit", "c-1.1", True, "running"),
        ("instance", "screen", "c-1.2", True, "pending"),
        ("tenant", "ship", "c-1.3", True, "pending"),
        ("tenant", "audit", "c-1.4", True, "pending"),
    ]
    assert [r.workflow_id for r in sent.runs] == [
        f"{tenant}/{r.definition}/{r.key}" for r in sent.runs
    ]

    command = client.get_workflow_handle(sent.workflow_id)
    await command.result()
    described = await command.describe()
    assert described.workflow_type == COMMAND_WORKFLOW_TYPE
    attributes = described.typed_search_attributes
    assert (attributes.get(TENANT_ID), attributes.get(DAG_COMMAND)) == (tenant, ORDER_CREATED)
    assert attributes.get(DAG_STATUS) == "Completed"
    spans = []
    for run in sent.runs:
        handle = client.get_workflow_handle(run.workflow_id)
        who = "instance" if run.scope == "instance" else "tenant"
        assert await handle.result() == {"who": who, "input": {"order": 7}}
        described = await handle.describe()
        assert described.status == WorkflowExecutionStatus.COMPLETED
        assert described.parent_id == sent.workflow_id
        attributes = described.typed_search_attributes
        assert attributes.get(DAG_COMMAND) == ORDER_CREATED
        assert attributes.get(TENANT_ID) == tenant
        assert (attributes.get(DAG_NAME), attributes.get(DAG_VERSION)) == (run.definition, 1)
        assert described.close_time is not None
        spans.append((described.start_time, described.close_time, described.run_id))
    for before, after in itertools.pairwise(spans):
        assert before[1] <= after[0]  # each run started after the one before it closed
    got = await acme.commands.get("c-1")
    assert got.created is False and got.workflow_id == sent.workflow_id
    assert [(r.status, r.error, r.run_id) for r in got.runs] == [
        ("completed", None, span[2]) for span in spans
    ]


async def test_the_tenant_run_waits_until_the_instance_run_completed(
    service: Starter, client: Client
) -> None:
    admin = service.instance()
    await admin.instance.definitions.create(waits("slow-audit", 2))
    await admin.instance.bindings.create(ORDER_CREATED, "slow-audit")
    tenant = new_tenant_id()
    acme = await service.tenant(tenant)
    await acme.definitions.create(echo("ship", "tenant"))
    await acme.bindings.create(ORDER_CREATED, "ship")

    sent = await acme.commands.send(ORDER_CREATED, "slow", {"n": 1})
    audit, ship = sent.runs
    assert [(audit.status, ship.status)] == [("running", "pending")]
    await until_statuses(acme, "slow", ["running", "pending"])
    with pytest.raises(RPCError) as missing:  # not started while the instance run runs
        await client.get_workflow_handle(ship.workflow_id).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND

    assert sent.workflow_id is not None
    await client.get_workflow_handle(sent.workflow_id).result()
    first = await client.get_workflow_handle(audit.workflow_id).describe()
    second = await client.get_workflow_handle(ship.workflow_id).describe()
    assert first.close_time is not None and second.start_time >= first.close_time
    assert (first.close_time - first.start_time).total_seconds() >= 2
    assert await statuses(acme, "slow") == ["completed", "completed"]


async def test_a_failing_run_leaves_the_later_runs_not_run(
    service: Starter, client: Client
) -> None:
    admin = service.instance()
    await admin.instance.definitions.create(fails("strict-audit"))
    await admin.instance.bindings.create(ORDER_CREATED, "strict-audit")
    tenant = new_tenant_id()
    acme = await service.tenant(tenant)
    await acme.definitions.create(echo("ship", "tenant"))
    await acme.definitions.create(echo("bill", "tenant"))
    await acme.bindings.create(ORDER_CREATED, "ship")
    await acme.bindings.create(ORDER_CREATED, "bill")

    sent = await acme.commands.send(ORDER_CREATED, "doomed", {"n": 1})
    assert sent.workflow_id is not None
    command = client.get_workflow_handle(sent.workflow_id)
    with pytest.raises(WorkflowFailureError) as failed:
        await command.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == COMMAND_FAILED
    assert cause.non_retryable
    audit, ship, bill = sent.runs
    assert audit.workflow_id in cause.message and "failed" in cause.message
    assert f"not run: {ship.workflow_id}, {bill.workflow_id}" in cause.message
    described = await command.describe()
    assert described.typed_search_attributes.get(DAG_STATUS) == "Failed"

    got = await acme.commands.get("doomed")
    assert [r.status for r in got.runs] == ["failed", "not_run", "not_run"]
    assert got.runs[0].error and "check" in got.runs[0].error
    for run in (ship, bill):
        with pytest.raises(RPCError) as missing:
            await client.get_workflow_handle(run.workflow_id).describe()
        assert missing.value.status == RPCStatusCode.NOT_FOUND
    # the failed run is a run like any other: its address answers
    detail = await acme.runs.get(audit.id)
    assert (detail.status, detail.command) == ("failed", ORDER_CREATED)
    again = await acme.runs.rerun(audit.id)
    assert again.created and again.definition == "strict-audit"

    async def listed_as_an_error() -> bool:
        errors = await acme.runs.errors()
        return [(e.run, e.step) for e in errors.items if e.run == audit.id] == [(audit.id, "check")]

    await eventually(listed_as_an_error, within=20)


async def test_cancelling_a_command_or_its_run_starts_no_later_run(
    service: Starter, client: Client
) -> None:
    tenant = new_tenant_id()
    acme = await service.tenant(tenant)
    await acme.definitions.create(waits("hold", 30))
    await acme.definitions.create(echo("ship", "tenant"))
    await acme.bindings.create(ORDER_CREATED, "hold")
    await acme.bindings.create(ORDER_CREATED, "ship")

    # cancelling the command run cancels the run in progress
    sent = await acme.commands.send(ORDER_CREATED, "stop", {})
    assert sent.workflow_id is not None
    await until_statuses(acme, "stop", ["running", "pending"])
    command = client.get_workflow_handle(sent.workflow_id)
    await command.cancel()
    with pytest.raises(WorkflowFailureError) as failed:
        await command.result()
    assert isinstance(failed.value.cause, CancelledError)
    assert await statuses(acme, "stop") == ["cancelled", "not_run"]
    hold = await client.get_workflow_handle(sent.runs[0].workflow_id).describe()
    assert hold.status == WorkflowExecutionStatus.CANCELED
    described = await command.describe()
    assert described.typed_search_attributes.get(DAG_STATUS) == "Cancelled"

    # cancelling the run in progress (as any run) fails the command
    sent = await acme.commands.send(ORDER_CREATED, "drop", {})
    assert sent.workflow_id is not None
    await until_statuses(acme, "drop", ["running", "pending"])
    await acme.runs.cancel(sent.runs[0].id)
    with pytest.raises(WorkflowFailureError) as failed:
        await client.get_workflow_handle(sent.workflow_id).result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == COMMAND_FAILED
    got = await acme.commands.get("drop")
    assert [(r.status, r.error) for r in got.runs] == [
        ("cancelled", "cancelled"),
        ("not_run", None),
    ]


async def test_run_lists_show_a_commands_runs_but_not_the_command_run(
    service: Starter, client: Client
) -> None:
    tenant = new_tenant_id()
    acme = await service.tenant(tenant)
    await acme.definitions.create(echo("pack", "tenant"))
    await acme.definitions.create(echo("audit", "tenant"))
    calls = {
        "name": "ship",
        "steps": {"call": {"uses": "workflow", "with": {"definition": "pack", "input": 1}}},
    }
    await acme.definitions.create(calls)
    await acme.bindings.create(ORDER_CREATED, "audit")
    await acme.bindings.create(ORDER_CREATED, "ship")
    sent = await acme.commands.send(ORDER_CREATED, "listed", {})
    alone = await acme.runs.start("audit", {}, key="alone")
    assert sent.workflow_id is not None
    await client.get_workflow_handle(sent.workflow_id).result()
    wanted = {alone.workflow_id, *(run.workflow_id for run in sent.runs)}

    async def listed() -> bool:
        found = {run.workflow_id for run in (await acme.runs.list()).items}
        return found == wanted

    await eventually(listed, within=20)
    # the query itself leaves out the command run and the child run of ship's workflow step
    raw = {execution.id async for execution in client.list_workflows(runs_query(tenant))}
    assert raw == wanted
    everything = {e.id async for e in client.list_workflows(f"TenantId = '{tenant}'")}
    assert sent.workflow_id in everything
    assert f"{sent.runs[1].workflow_id}/call" in everything

    # a command's run is addressed and traced like any other run
    ship = sent.runs[1]
    assert (await acme.runs.get(ship.id)).status == "completed"
    assert [s.step for s in (await acme.runs.trace(ship.id)).steps] == ["call"]


async def test_a_single_binding_runs_under_the_command_id(service: Starter) -> None:
    tenant = new_tenant_id()
    acme = await service.tenant(tenant)
    await acme.definitions.create(echo("ship", "tenant"))
    binding = await acme.bindings.create(ORDER_CREATED, "ship")
    sent = await acme.commands.send(ORDER_CREATED, "order-42", {"n": 1})
    assert sent.workflow_id is None  # no command run: the run starts at once
    [run] = sent.runs
    assert (run.key, run.binding, run.status) == ("order-42", binding.id, "running")
    assert run.workflow_id == f"{tenant}/ship/order-42"
    assert run.id == "ship/order-42"
    await until_statuses(acme, "order-42", ["completed"])
    await forget_commands(service)  # a retry after a lost ledger write finds the run
    [again] = (await acme.commands.send(ORDER_CREATED, "order-42", {"n": 1})).runs
    assert (again.created, again.status, again.run_id) == (False, "completed", run.run_id)


async def test_a_repeated_command_id_starts_nothing(service: Starter, client: Client) -> None:
    admin = service.instance()
    await admin.instance.definitions.create(echo("audit", "instance"))
    await admin.instance.bindings.create(ORDER_CREATED, "audit")
    tenant = new_tenant_id()
    acme = await service.tenant(tenant)
    await acme.definitions.create(echo("ship", "tenant"))
    await acme.bindings.create(ORDER_CREATED, "ship")
    body = {"type": ORDER_CREATED, "id": "again", "payload": {"order": 1}}

    first = await acme.commands.send(ORDER_CREATED, "again", {"order": 1})
    status, answer = await post(acme, "/v1/commands", body)
    assert status == 200
    repeat = Command.model_validate(answer)
    assert repeat == first.model_copy(update={"created": False})
    # a binding added since does not change what a repeat answers
    await acme.definitions.create(echo("bill", "tenant"))
    await acme.bindings.create(ORDER_CREATED, "bill")
    assert (await acme.commands.send(ORDER_CREATED, "again", {"order": 1})).runs == first.runs

    async def both_listed() -> bool:
        return len(await command_runs(client, tenant, ORDER_CREATED)) >= 2

    await eventually(both_listed)
    assert await command_runs(client, tenant, ORDER_CREATED) == sorted(
        r.workflow_id for r in first.runs
    )

    with pytest.raises(Invalid) as error:
        await acme.commands.send(ORDER_CREATED, "again", {"order": 2})
    assert [e.path for e in error.value.errors] == ["payload"]
    with pytest.raises(Invalid) as error:
        await acme.commands.send("order.paid", "again", {"order": 1})
    assert [e.path for e in error.value.errors] == ["type"]
    assert len(await service.sql("SELECT id FROM commands")) == 1


async def test_concurrent_repeats_start_each_run_once(service: Starter, client: Client) -> None:
    tenant = new_tenant_id()
    acme = await service.tenant(tenant)
    for name in ("ship", "bill"):
        await acme.definitions.create(echo(name, "tenant"))
        await acme.bindings.create(ORDER_CREATED, name)
    answers = await asyncio.gather(
        *(acme.commands.send(ORDER_CREATED, "burst", {"n": 1}) for _ in range(5))
    )
    assert sum(answer.created for answer in answers) == 1
    assert len({tuple(run.workflow_id for run in answer.runs) for answer in answers}) == 1
    assert len(await service.sql("SELECT id FROM commands")) == 1
    wanted = sorted(run.workflow_id for run in answers[0].runs)

    async def listed() -> bool:
        return len(await command_runs(client, tenant, ORDER_CREATED)) >= len(wanted)

    await eventually(listed)
    assert await command_runs(client, tenant, ORDER_CREATED) == wanted


async def test_a_retry_after_a_lost_ledger_write_adopts_the_runs(
    service: Starter, client: Client
) -> None:
    acme = await service.tenant(new_tenant_id())
    for name in ("ship", "bill"):
        await acme.definitions.create(echo(name, "tenant"))
        await acme.bindings.create(ORDER_CREATED, name)
    first = await acme.commands.send(ORDER_CREATED, "lost", {"n": 1})
    assert first.workflow_id is not None
    command = client.get_workflow_handle(first.workflow_id)
    await command.result()
    before = await command.describe()
    await forget_commands(service)  # as if the service died before writing the ledger

    retry = await acme.commands.send(ORDER_CREATED, "lost", {"n": 1})
    assert retry.created and retry.workflow_id == first.workflow_id
    assert [r.workflow_id for r in retry.runs] == [r.workflow_id for r in first.runs]
    assert [(r.created, r.status) for r in retry.runs] == [(False, "completed")] * 2
    runs = [await client.get_workflow_handle(r.workflow_id).describe() for r in retry.runs]
    assert [r.run_id for r in retry.runs] == [d.run_id for d in runs]
    after = await command.describe()
    assert (after.run_id, after.status) == (before.run_id, WorkflowExecutionStatus.COMPLETED)
    assert await acme.commands.get("lost") == retry.model_copy(update={"created": False})

    await forget_commands(service)
    with pytest.raises(Invalid) as error:  # the runs were started for another payload
        await acme.commands.send(ORDER_CREATED, "lost", {"n": 2})
    assert [e.path for e in error.value.errors] == ["id"]


async def test_a_retry_needs_no_worker(starter: Starter, client: Client) -> None:
    """Without a worker nothing runs, yet the command is accepted, a retry after a lost ledger
    write answers from the command run's memo, and GET describes the runs."""
    acme = await starter.tenant(new_tenant_id())
    for name in ("ship", "bill"):
        await acme.definitions.create(echo(name, "tenant"))
        await acme.bindings.create(ORDER_CREATED, name)
    first = await acme.commands.send(ORDER_CREATED, "idle", {"n": 1})
    assert first.workflow_id is not None
    try:
        assert [r.status for r in first.runs] == ["running", "pending"]
        await forget_commands(starter)
        retry = await acme.commands.send(ORDER_CREATED, "idle", {"n": 1})
        assert [r.workflow_id for r in retry.runs] == [r.workflow_id for r in first.runs]
        assert [(r.created, r.status) for r in retry.runs] == [(False, "pending")] * 2
        assert await statuses(acme, "idle") == ["pending", "pending"]
    finally:
        await client.get_workflow_handle(first.workflow_id).terminate("test over")


async def test_a_run_key_in_use_refuses_the_command_before_anything_starts(
    service: Starter, client: Client
) -> None:
    admin = service.instance()
    await admin.instance.definitions.create(echo("audit", "instance"))
    await admin.instance.bindings.create(ORDER_CREATED, "audit")
    tenant = new_tenant_id()
    acme = await service.tenant(tenant)
    await acme.definitions.create(echo("ship", "tenant"))
    await acme.bindings.create(ORDER_CREATED, "ship")
    taken = await acme.runs.start("ship", {}, key="taken.2")  # the key of the command's 2nd run

    with pytest.raises(Invalid) as error:
        await acme.commands.send(ORDER_CREATED, "taken", {})
    assert [e.path for e in error.value.errors] == ["id"]
    assert taken.workflow_id in (error.value.problem.detail or "")
    for wid in (f"{tenant}/command:taken", f"{tenant}/audit/taken.1"):
        with pytest.raises(RPCError) as missing:
            await client.get_workflow_handle(wid).describe()
        assert missing.value.status == RPCStatusCode.NOT_FOUND
    with pytest.raises(NotFound):
        await acme.commands.get("taken")


async def forget_commands(service: Starter) -> None:
    """Empty the command ledger."""
    engine = create_engine(service.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DELETE FROM commands"))
    finally:
        await engine.dispose()


async def test_an_unbound_type_answers_404_naming_it(service: Starter) -> None:
    acme = await service.tenant()
    with pytest.raises(NotFound) as error:
        await acme.commands.send("order.lost", "c-1", {})
    assert "order.lost" in (error.value.problem.detail or "")
    assert error.value.errors[0].path == "type"
    with pytest.raises(NotFound):
        await acme.commands.get("c-1")  # nothing went into the ledger


async def test_every_bound_run_is_checked_before_any_starts(
    service: Starter, client: Client
) -> None:
    admin = service.instance()
    await admin.instance.definitions.create(echo("audit", "instance"))
    await admin.instance.bindings.create(ORDER_CREATED, "audit")
    tenant = new_tenant_id()
    acme = await service.tenant(tenant)
    schema = {"type": "object", "required": ["order"], "properties": {"order": {"type": "string"}}}
    await acme.definitions.create(echo("ship", "tenant", input=schema))
    await acme.bindings.create(ORDER_CREATED, "ship")

    with pytest.raises(Invalid) as error:
        await acme.commands.send(ORDER_CREATED, "bad", {"order": 5})
    assert [(e.path, e.message.split(":")[0]) for e in error.value.errors] == [
        ("payload.order", "ship")
    ]
    await acme.definitions.deactivate("ship")
    with pytest.raises(Conflict) as conflict:
        await acme.commands.send(ORDER_CREATED, "bad", {"order": "5"})
    assert "ship" in (conflict.value.problem.detail or "")
    with pytest.raises(NotFound):
        await acme.commands.get("bad")
    for wid in (f"{tenant}/audit/bad.1", f"{tenant}/command:bad"):  # nor did anything else
        with pytest.raises(RPCError) as missing:
            await client.get_workflow_handle(wid).describe()
        assert missing.value.status == RPCStatusCode.NOT_FOUND

    await acme.definitions.activate("ship")
    sent = await acme.commands.send(ORDER_CREATED, "bad", {"order": "5"})
    assert [run.definition for run in sent.runs] == ["audit", "ship"]


async def test_commands_are_listed_newest_first(service: Starter) -> None:
    acme = await service.tenant()
    await acme.definitions.create(echo("ship", "tenant"))
    await acme.bindings.create(ORDER_CREATED, "ship")
    await acme.bindings.create("order.paid", "ship")
    for n in range(3):
        await acme.commands.send(ORDER_CREATED, f"c{n}", {"n": n})
    await acme.commands.send("order.paid", "p0", {})
    assert [c.id for c in (await acme.commands.list()).items] == ["p0", "c2", "c1", "c0"]
    assert [c.id async for c in acme.commands.iterate(type=ORDER_CREATED, limit=2)] == [
        "c2",
        "c1",
        "c0",
    ]
    listed = (await acme.commands.list(type="order.paid")).items
    assert [c.runs[0].workflow_id.split("/", 1)[1] for c in listed] == ["ship/p0"]


async def test_tenants_never_see_each_others_bindings_or_commands(service: Starter) -> None:
    a = await service.tenant()
    b = await service.tenant()
    await a.definitions.create(echo("ship", "a"))
    await b.definitions.create(echo("ship", "b"))
    a_binding = await a.bindings.create(ORDER_CREATED, "ship")
    b_binding = await b.bindings.create(ORDER_CREATED, "ship")
    a_sent = await a.commands.send(ORDER_CREATED, "same-id", {"from": "a"})
    b_sent = await b.commands.send(ORDER_CREATED, "same-id", {"from": "b"})  # its own ledger
    assert b_sent.created and b_sent.runs[0].workflow_id != a_sent.runs[0].workflow_id
    await a.commands.send(ORDER_CREATED, "only-a", {})

    with pytest.raises(NotFound):
        await b.bindings.get(a_binding.id)
    with pytest.raises(NotFound):
        await b.bindings.delete(a_binding.id)
    with pytest.raises(NotFound):
        await b.commands.get("only-a")
    assert [x.id for x in (await b.bindings.list()).items] == [b_binding.id]
    assert [c.id for c in (await b.commands.list()).items] == ["same-id"]
    got = await b.commands.get("same-id")
    assert [r.workflow_id for r in got.runs] == [r.workflow_id for r in b_sent.runs]
    assert {c.id for c in (await a.commands.list()).items} == {"same-id", "only-a"}
    await a.bindings.get(a_binding.id)  # still there


async def test_command_routes_need_a_tenant_key(service: Starter) -> None:
    admin = service.instance()
    with pytest.raises(Forbidden):
        await admin.commands.send(ORDER_CREATED, "c", {})
    with pytest.raises(Forbidden):
        await admin.commands.list()


async def test_the_openapi_document_says_when_a_command_starts_nothing(starter: Starter) -> None:
    document = await starter.client(None).openapi()
    answers = document["paths"]["/v1/commands"]["post"]["responses"]
    assert "names it" in answers["404"]["description"]
    assert "cannot run" in answers["409"]["description"]
    assert "input schema" in answers["422"]["description"]
    assert answers["201"]["content"]["application/json"]
