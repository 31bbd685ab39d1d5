"""Runs through the service: start, idempotency, versions, input checks, list, get, trace,
errors, the operator verbs, rerun, and tenant isolation (each test on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import pytest
from temporalio.client import Client

from starter.api.runs import RUN_KEY_PATTERN, RunDetail, RunSummary
from starter.client import DagflowClient
from starter.errors import BadRequest, Conflict, Invalid, NotFound, PayloadTooLarge, Unavailable
from starter.openapi import openapi
from starter.routes import ROUTES
from starter.routes.runs import literal, runs_query
from tests.engine import dag_worker
from tests.starter import Databases, Starter, running, service_settings
from tests.steps import Probe
from workflows.definition import Definition
from workflows.search_attributes import run_attributes
from workflows.types import WORKFLOW_TYPE, DagRunInput

T = TypeVar("T")
CLOSED = {"completed", "failed", "cancelled", "timed_out"}


@pytest.fixture
async def probe(starter: Starter, client: Client) -> AsyncIterator[Probe]:
    """A worker on the service's task queue whose ``flaky`` step counts its calls."""
    probe = Probe()
    async with dag_worker(client, probe.activities(), task_queue=starter.settings.task_queue):
        yield probe


def step(value: Any = "ok", fail_times: int = 0, **extra: Any) -> dict[str, Any]:
    """A ``flaky`` step (the probe's) that fails ``fail_times`` times, then outputs ``value``."""
    return {
        "uses": "flaky",
        "with": {"value": value, "fail_times": fail_times},
        "retry": {"max_attempts": 1},
        **extra,
    }


def definition(name: str, steps: dict[str, Any], output: Any = None, **extra: Any) -> Any:
    return {"name": name, "steps": steps, "output": output, **extra}


SIMPLE = definition(
    "simple",
    {
        "first": step("one"),
        "second": {"needs": ["first"], "uses": "transform", "with": {"value": "${{ input }}"}},
    },
    output="${{ [steps.first.output, steps.second.output] }}",
)


def parked(name: str = "parked", fail_times: int = 1) -> Any:
    """``first`` succeeds, then ``charge`` fails (``fail_times`` calls over every run of the
    probe) and parks (``on_error: manual``)."""
    return definition(
        name,
        {
            "first": step("one"),
            "charge": step("charged", fail_times=fail_times, needs=["first"], on_error="manual"),
        },
        output="${{ steps.charge.output }}",
    )


def waiting(name: str = "approval") -> Any:
    """Waits for the event ``approved`` and outputs its payload."""
    return definition(
        name,
        {"approve": {"uses": "wait", "with": {"event": "approved", "timeout": "5m"}}},
        output="${{ steps.approve.output }}",
    )


async def until(check: Callable[[], Awaitable[T | None]], within: float = 15.0) -> T:
    """Poll ``check`` until it returns something (instead of sleeping)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        found = await check()
        if found is not None:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def settled(tenant: DagflowClient, run: str, *statuses: str) -> RunDetail:
    """The run once its status is one of ``statuses`` (default: any closed status)."""
    wanted = set(statuses or CLOSED)

    async def check() -> RunDetail | None:
        detail = await tenant.runs.get(run)
        return detail if detail.status in wanted else None

    return await until(check)


async def listed(tenant: DagflowClient, count: int, **filters: Any) -> list[RunSummary]:
    """Every run the list gives for ``filters``, once there are ``count`` (visibility lags)."""

    async def check() -> list[RunSummary] | None:
        items = [run async for run in tenant.runs.iterate(**filters)]
        return items if len(items) == count else None

    return await until(check)


# --- starting runs -----------------------------------------------------------------------------


async def test_a_run_completes_with_its_output_and_trace(starter: Starter, probe: Probe) -> None:
    tenant = await starter.tenant()
    await tenant.definitions.create(SIMPLE)
    ref = await tenant.runs.start("simple", {"order": 7})
    assert ref.created and ref.version == 1 and ref.id == f"simple/{ref.key}"
    assert ref.workflow_id.endswith(f"/simple/{ref.key}") and ref.run_id

    run = await settled(tenant, ref.id)
    assert (run.status, run.output, run.error) == ("completed", ["one", {"order": 7}], None)
    assert (run.input, run.version, run.definition, run.key) == ({"order": 7}, 1, "simple", ref.key)
    assert run.started_at is not None and run.closed_at is not None
    assert [(s.step, s.kind, s.status, s.attempts) for s in run.steps] == [
        ("first", "flaky", "succeeded", 1),
        ("second", "transform", "succeeded", 1),
    ]

    trace = await tenant.runs.trace(ref.id)
    assert trace.status == "completed" and trace.version == 1 and trace.duration is not None
    first = trace.steps[0]
    assert (first.step, first.status, first.attempts, first.error) == (
        "first",
        "succeeded",
        1,
        None,
    )
    assert first.started_at and first.finished_at and first.duration is not None
    assert first.duration == pytest.approx(
        (first.finished_at - first.started_at).total_seconds(), abs=0.01
    )
    assert probe.calls["first"] == 1


async def test_the_same_key_and_body_return_the_same_run(starter: Starter, probe: Probe) -> None:
    tenant = await starter.tenant()
    await tenant.definitions.create(SIMPLE)
    first = await tenant.runs.start("simple", {"n": 1}, key="order-1")
    assert first.created and first.key == "order-1"
    again = await tenant.runs.start("simple", {"n": 1}, key="order-1")
    assert not again.created and (again.id, again.run_id) == (first.id, first.run_id)
    in_body = await tenant.runs.start("simple", {"n": 1}, key="order-1", key_in_body=True)
    assert not in_body.created and in_body.run_id == first.run_id

    with pytest.raises(Invalid) as different:
        await tenant.runs.start("simple", {"n": 2}, key="order-1")
    assert "different request" in str(different.value)
    assert different.value.errors[0].path == "idempotency_key"

    headers = {"Idempotency-Key": "order-1"}
    body = json.dumps({"definition": "simple", "input": {"n": 1}, "idempotency_key": "other"})
    with pytest.raises(BadRequest) as both:
        await tenant.send("POST", "/v1/runs", text=body, headers=headers)
    assert both.value.errors[0].path == "header.Idempotency-Key"

    await settled(tenant, first.id)
    runs = await listed(tenant, 1, definition="simple")
    assert [r.id for r in runs] == ["simple/order-1"]
    assert probe.calls["first"] == 1


async def test_a_run_pins_its_version(starter: Starter, probe: Probe) -> None:
    tenant = await starter.tenant()
    one = definition("pinned", {"a": {"uses": "transform", "with": {"value": 1}}}, "${{ 1 }}")
    two = definition("pinned", {"a": {"uses": "transform", "with": {"value": 2}}}, "${{ 2 }}")
    await tenant.definitions.create(one)
    first = await tenant.runs.start("pinned")
    await tenant.definitions.update("pinned", two)
    current = await tenant.runs.start("pinned")
    old = await tenant.runs.start("pinned", version=1)
    assert (first.version, current.version, old.version) == (1, 2, 1)
    assert (await settled(tenant, first.id)).output == 1
    assert (await settled(tenant, current.id)).output == 2
    done = await settled(tenant, old.id)
    assert (done.output, done.version) == (1, 1)
    with pytest.raises(NotFound, match="no version 9"):
        await tenant.runs.start("pinned", version=9)


async def test_the_input_is_checked_against_the_schema(starter: Starter) -> None:
    tenant = await starter.tenant()
    schema = {
        "type": "object",
        "required": ["order_id", "amount"],
        "properties": {
            "order_id": {"type": "string"},
            "amount": {"type": "number", "minimum": 0},
            "items": {"type": "array", "items": {"type": "object", "required": ["sku"]}},
        },
    }
    await tenant.definitions.create(definition("checked", SIMPLE["steps"], input=schema))
    with pytest.raises(Invalid) as error:
        await tenant.runs.start("checked", {"amount": -1, "items": [{"sku": "a"}, {}]})
    assert {(e.path, e.message) for e in error.value.errors} == {
        ("input", "'order_id' is a required property"),
        ("input.amount", "-1 is less than the minimum of 0"),
        ("input.items[1]", "'sku' is a required property"),
    }
    assert "3 problems" in str(error.value)
    assert [r async for r in tenant.runs.iterate(definition="checked")] == []


async def test_inactive_definitions_and_templates_do_not_run(starter: Starter) -> None:
    tenant = await starter.tenant()
    await tenant.definitions.create(SIMPLE)
    await tenant.definitions.deactivate("simple")
    with pytest.raises(Conflict, match="deactivated"):
        await tenant.runs.start("simple")
    template = definition(
        "tmpl",
        {"a": {"uses": "transform", "with": {"value": "${{ params.x }}"}}},
        params={"x": {"type": "string", "default": "y"}},
    )
    await tenant.definitions.create(template)
    with pytest.raises(Invalid, match="template"):
        await tenant.runs.start("tmpl")
    with pytest.raises(NotFound):
        await tenant.runs.start("missing")


async def test_workflow_steps_run_definitions_from_the_store(
    starter: Starter, probe: Probe
) -> None:
    tenant = await starter.tenant()
    child = definition(
        "child", {"c": {"uses": "transform", "with": {"value": "${{ input.n * 10 }}"}}}, "${{ 1 }}"
    )
    await tenant.definitions.create(child)
    await tenant.definitions.update(
        "child", {**child, "output": "${{ steps.c.output }}"}
    )  # version 2 outputs n * 10
    parent = definition(
        "parent",
        {
            "current": {"uses": "workflow", "with": {"definition": "child", "input": {"n": 2}}},
            "old": {"uses": "workflow", "with": {"definition": "child@1", "input": {"n": 2}}},
        },
        output="${{ [steps.current.output, steps.old.output] }}",
    )
    await tenant.definitions.create(parent)
    ref = await tenant.runs.start("parent")
    done = await settled(tenant, ref.id)
    assert (done.status, done.output) == ("completed", [20, 1])
    # child runs are not listed as the tenant's runs of their own
    assert [r.id for r in await listed(tenant, 1)] == [ref.id]

    orphan = definition(
        "orphan", {"call": {"uses": "workflow", "with": {"definition": "nowhere@3"}}}
    )
    await tenant.definitions.create(orphan)
    with pytest.raises(Invalid) as missing:
        await tenant.runs.start("orphan")
    assert missing.value.errors[0].path == "steps.call.with.definition"
    assert "'call'" in missing.value.errors[0].message
    await tenant.definitions.update(
        "orphan",
        definition("orphan", {"call": {"uses": "workflow", "with": {"definition": "child@7"}}}),
    )
    with pytest.raises(Invalid, match="no version 7"):
        await tenant.runs.start("orphan")


# --- listing, errors and the operator verbs ---------------------------------------------------


async def test_list_filters_and_paginates(starter: Starter, probe: Probe) -> None:
    tenant = await starter.tenant()
    await tenant.definitions.create(SIMPLE)
    await tenant.definitions.create(waiting())
    before = datetime.now(UTC) - timedelta(seconds=5)
    done = [await tenant.runs.start("simple", {"n": n}, key=f"s{n}") for n in range(3)]
    held = await tenant.runs.start("approval", key="held")
    for ref in done:
        await settled(tenant, ref.id)
    await settled(tenant, held.id, "waiting")

    everything = await listed(tenant, 4)
    assert {r.id for r in everything} == {"simple/s0", "simple/s1", "simple/s2", "approval/held"}
    assert everything[0].id == "approval/held"  # newest first
    assert {r.id for r in await listed(tenant, 3, definition="simple")} == {
        "simple/s0",
        "simple/s1",
        "simple/s2",
    }
    assert [r.id for r in await listed(tenant, 1, status="waiting")] == ["approval/held"]
    assert len(await listed(tenant, 3, status="completed")) == 3
    assert [r async for r in tenant.runs.iterate(status="failed")] == []
    assert len(await listed(tenant, 4, started_after=before)) == 4
    assert [r async for r in tenant.runs.iterate(started_before=before)] == []

    first = await tenant.runs.list(definition="simple", limit=2)
    assert len(first.items) == 2 and first.next_cursor
    second = await tenant.runs.list(definition="simple", limit=2, cursor=first.next_cursor)
    assert len(second.items) == 1 and second.next_cursor is None
    assert {r.id for r in first.items + second.items} == {"simple/s0", "simple/s1", "simple/s2"}
    with pytest.raises(BadRequest) as other_filters:
        await tenant.runs.list(definition="approval", limit=2, cursor=first.next_cursor)
    assert other_filters.value.errors[0].path == "query.cursor"
    summary = next(r for r in everything if r.id == "simple/s0")
    assert (summary.status, summary.version, summary.key) == ("completed", 1, "s0")
    assert summary.started_at and summary.closed_at
    await tenant.runs.cancel(held.id)


async def test_errors_name_a_run_no_worker_answers_for_and_list_the_others(
    starter: Starter, probe: Probe, client: Client
) -> None:
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    tenant = await starter.tenant(tenant_id)
    await tenant.definitions.create(parked())
    ref = await tenant.runs.start("parked")
    await settled(tenant, ref.id, "needs_attention")
    # a parked run of the tenant on a task queue no worker polls: its progress query
    # cannot be answered
    definition = Definition.model_validate(parked())
    await client.start_workflow(
        WORKFLOW_TYPE,
        DagRunInput(definition=definition, tenant=tenant_id, version=1),
        id=f"{tenant_id}/parked/orphan",
        task_queue=f"nobody-{uuid.uuid4()}",
        search_attributes=run_attributes(tenant_id, "parked", 1, status="NeedsAttention"),
    )

    async def both_scanned() -> Any:
        errors = await tenant.runs.errors()
        return errors if errors.runs_scanned == 2 else None

    errors = await until(both_scanned, within=60)
    assert [(e.run, e.step) for e in errors.items] == [(ref.id, "charge")]
    assert errors.runs_unread == ["parked/orphan"]
    await client.get_workflow_handle(f"{tenant_id}/parked/orphan").terminate()


async def test_a_parked_step_is_listed_and_retried_with_new_inputs(
    starter: Starter, probe: Probe
) -> None:
    tenant = await starter.tenant()
    await tenant.definitions.create(parked())
    ref = await tenant.runs.start("parked")
    run = await settled(tenant, ref.id, "needs_attention")
    assert [(s.step, s.status) for s in run.steps] == [
        ("first", "succeeded"),
        ("charge", "needs_attention"),
    ]

    async def parked_errors() -> Any:
        errors = await tenant.runs.errors()
        return errors if errors.items else None

    errors = await until(parked_errors)
    [error] = errors.items
    assert (error.run, error.step, error.status, error.run_status) == (
        ref.id,
        "charge",
        "needs_attention",
        "needs_attention",
    )
    assert error.attempts == 1 and "flaky failure 1" in (error.error or "")
    assert [r.id for r in await listed(tenant, 1, status="needs_attention")] == [ref.id]

    with pytest.raises(Conflict, match="not parked"):
        await tenant.runs.retry(ref.id, "first")
    with pytest.raises(NotFound, match="no step named 'nope'"):
        await tenant.runs.complete(ref.id, "nope", 1)
    action = await tenant.runs.retry(ref.id, "charge", {"value": "fixed"})
    assert (action.action, action.step) == ("retry", "charge")
    done = await settled(tenant, ref.id)
    assert (done.status, done.output) == ("completed", "fixed")
    assert probe.inputs["charge"][-1] == {"value": "fixed", "fail_times": 1}
    with pytest.raises(Conflict, match="closed"):
        await tenant.runs.retry(ref.id, "charge")


async def test_complete_skip_fail_events_and_cancel(starter: Starter, probe: Probe) -> None:
    tenant = await starter.tenant()
    await tenant.definitions.create(parked(fail_times=100))
    await tenant.definitions.create(waiting())

    completed = await tenant.runs.start("parked", key="complete")
    skipped = await tenant.runs.start("parked", key="skip")
    await settled(tenant, completed.id, "needs_attention")
    await settled(tenant, skipped.id, "needs_attention")
    assert (await tenant.runs.complete(completed.id, "charge", {"by": "hand"})).action == "complete"
    assert (await settled(tenant, completed.id)).output == {"by": "hand"}
    assert (await tenant.runs.skip(skipped.id, "charge")).action == "skip"
    done = await settled(tenant, skipped.id)
    assert done.status == "completed" and done.steps[1].status == "skipped"

    approved = await tenant.runs.start("approval", key="approved")
    await settled(tenant, approved.id, "waiting")
    assert (await tenant.runs.send(approved.id, "approved", {"by": "ann"})).action == "event"
    assert (await settled(tenant, approved.id)).output == {"by": "ann"}

    failed = await tenant.runs.start("approval", key="failed")
    await settled(tenant, failed.id, "waiting")
    assert (await tenant.runs.fail(failed.id, "no longer needed")).action == "fail"
    run = await settled(tenant, failed.id)
    assert run.status == "failed" and "no longer needed" in (run.error or "")

    cancelled = await tenant.runs.start("approval", key="cancelled")
    await settled(tenant, cancelled.id, "waiting")
    assert (await tenant.runs.cancel(cancelled.id)).action == "cancel"
    assert (await settled(tenant, cancelled.id)).status == "cancelled"
    for verb in (
        tenant.runs.cancel(cancelled.id),
        tenant.runs.fail(cancelled.id),
        tenant.runs.send(cancelled.id, "approved"),
        tenant.runs.skip(cancelled.id, "approve"),
    ):
        with pytest.raises(Conflict, match="closed"):
            await verb


async def test_a_timed_out_run_reports_timed_out(starter: Starter, probe: Probe) -> None:
    tenant = await starter.tenant()
    await tenant.definitions.create({**waiting("slow"), "timeout": "1s"})
    ref = await tenant.runs.start("slow")
    run = await settled(tenant, ref.id)
    assert run.status == "timed_out" and "timed out" in (run.error or "")
    assert [r.id for r in await listed(tenant, 1, status="timed_out")] == [ref.id]
    assert [r async for r in tenant.runs.iterate(status="failed")] == []


async def test_rerun_reuses_the_outputs_of_succeeded_steps(starter: Starter, probe: Probe) -> None:
    tenant = await starter.tenant()
    flaky = definition(
        "flaky",
        {"first": step("one"), "second": step("two", fail_times=1, needs=["first"])},
        output="${{ [steps.first.output, steps.second.output, input] }}",
    )
    await tenant.definitions.create(flaky)
    ref = await tenant.runs.start("flaky", {"n": 1})
    failed = await settled(tenant, ref.id)
    assert failed.status == "failed" and "second" in (failed.error or "")
    await tenant.definitions.update("flaky", {**flaky, "output": "${{ 'version 2' }}"})

    again = await tenant.runs.rerun(ref.id, key="retry-1")
    assert again.created and again.id == "flaky/retry-1" and again.version == 1
    done = await settled(tenant, again.id)
    assert (done.status, done.output, done.version) == ("completed", ["one", "two", {"n": 1}], 1)
    assert probe.calls["first"] == 1 and probe.calls["second"] == 2
    trace = await tenant.runs.trace(again.id)
    assert trace.steps[0].note == "reused from the earlier run"

    same = await tenant.runs.rerun(ref.id, key="retry-1")
    assert not same.created and same.run_id == again.run_id
    with pytest.raises(Conflict, match="completed"):
        await tenant.runs.rerun(again.id)
    await tenant.definitions.create(waiting())
    open_run = await tenant.runs.start("approval")
    await settled(tenant, open_run.id, "waiting")
    with pytest.raises(Conflict, match="waiting"):
        await tenant.runs.rerun(open_run.id)
    await tenant.runs.cancel(open_run.id)


async def test_rerun_of_a_run_whose_outputs_are_over_the_limit_answers_413(
    starter: Starter, probe: Probe
) -> None:
    """Without a payload store, a run whose step outputs add up to more than Temporal's 2 MB
    cannot be rerun (its snapshot is one payload): a 413 naming the remedy, not a 500."""
    tenant = await starter.tenant()
    copies = {
        f"copy{i}": {"uses": "transform", "with": {"value": "${{ input }}"}} for i in range(12)
    }
    await tenant.definitions.create(
        definition("big-outputs", {**copies, "last": step(fail_times=5, needs=list(copies))})
    )
    ref = await tenant.runs.start("big-outputs", "x" * 200_000)
    assert (await settled(tenant, ref.id)).status == "failed"
    with pytest.raises(
        PayloadTooLarge, match=r"over Temporal's limit of 2 MB.*DAGFLOW_PAYLOAD_STORE"
    ):
        await tenant.runs.rerun(ref.id)
    assert [r.id async for r in tenant.runs.iterate(definition="big-outputs")] == [ref.id]


# --- isolation and failures --------------------------------------------------------------------


async def test_tenants_never_reach_each_others_runs(starter: Starter, probe: Probe) -> None:
    a = await starter.tenant()
    b = await starter.tenant()
    await a.definitions.create(parked("shared-name"))
    held = await a.runs.start("shared-name", key="k1")
    await settled(a, held.id, "needs_attention")
    failing = definition("fails", {"x": step("x", fail_times=5)})
    await a.definitions.create(failing)
    broken = await a.runs.start("fails", key="k2")
    await settled(a, broken.id, "failed")

    for run in (held.id, broken.id):
        for attempt in (
            b.runs.get(run),
            b.runs.trace(run),
            b.runs.retry(run, "charge"),
            b.runs.complete(run, "charge", 1),
            b.runs.skip(run, "charge"),
            b.runs.fail(run, "mine now"),
            b.runs.send(run, "approved"),
            b.runs.cancel(run),
            b.runs.rerun(run),
        ):
            with pytest.raises(NotFound):
                await attempt
    with pytest.raises(NotFound):
        await b.runs.start("shared-name", key="k1")
    assert [r async for r in b.runs.iterate()] == []
    assert [r async for r in b.runs.iterate(definition="shared-name")] == []
    assert (await b.runs.errors()).items == []

    # B's own run under the same name and key is its own
    await b.definitions.create(SIMPLE | {"name": "shared-name"})
    mine = await b.runs.start("shared-name", key="k1")
    assert mine.created and mine.workflow_id != held.workflow_id
    await settled(b, mine.id)
    assert [r.id for r in await listed(b, 1)] == ["shared-name/k1"]
    assert {r.id for r in await listed(a, 2)} == {held.id, broken.id}
    assert (await a.runs.get(held.id)).status == "needs_attention"
    await a.runs.cancel(held.id)


def test_visibility_queries_quote_every_value() -> None:
    assert literal("it's") == r"'it\'s'"
    assert literal("back\\slash") == r"'back\\slash'"
    query = runs_query("acme", definition="x' OR TenantId != '", status=None)
    assert query.startswith("TenantId = 'acme' AND WorkflowType = 'DagRun'")
    assert r"DagName = 'x\' OR TenantId != \''" in query


async def test_runs_answer_503_while_temporal_is_unreachable(
    databases: Databases, temporal_address: str
) -> None:
    down = service_settings(await databases.fresh(), "127.0.0.1:9", temporal_timeout=0.5)
    async with running(down) as starter:
        tenant = await starter.tenant()
        await tenant.definitions.create(SIMPLE)
        for attempt in (
            tenant.runs.start("simple"),
            tenant.runs.list(),
            tenant.runs.get("simple/abc"),
            tenant.runs.errors(),
            tenant.runs.cancel("simple/abc"),
        ):
            with pytest.raises(Unavailable) as error:
                await attempt
            assert error.value.retry_after is not None and error.value.retry_after >= 1


async def test_run_keys_in_paths_are_checked(starter: Starter) -> None:
    tenant = await starter.tenant()
    async with aiohttp.ClientSession() as http:
        for path in ("/v1/runs/simple/bad%20key", "/v1/runs/BAD/key", "/v1/runs/s/k/steps/UP/skip"):
            method = "POST" if path.endswith("skip") else "GET"
            headers = {"Authorization": f"Bearer {tenant.api_key}"}
            async with http.request(method, starter.base_url + path, headers=headers) as answer:
                assert answer.status == 400, path
    missing = f"simple/{uuid.uuid4().hex[:8]}"
    with pytest.raises(NotFound):
        await tenant.runs.get(missing)


def test_openapi_documents_the_idempotency_header() -> None:
    [header] = openapi(ROUTES)["paths"]["/v1/runs"]["post"]["parameters"]
    assert (header["name"], header["in"], header["required"]) == (
        "Idempotency-Key",
        "header",
        False,
    )
    assert header["schema"]["pattern"] == RUN_KEY_PATTERN
