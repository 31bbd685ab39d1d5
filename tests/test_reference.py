"""docs/reference.md: it is what the generator makes, and every example in it validates and runs.

The examples run on a real worker (the built-in kinds, the test plugin's ``shout`` and
``flaky``, HTTP allowed to reach 127.0.0.0/8) against local HTTP servers, and their outputs are
checked here. An example that :data:`CASES` does not run fails :func:`test_every_example_runs`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.client import HttpClient
from activities.interceptor import LinearBackoffInterceptor
from activities.netguard import AddressGuard
from activities.registry import builtin_step_activities, load_plugins
from activities.secrets import SecretStore
from activities.webhook import verify_signature
from starter import reference
from starter.files import known_kinds
from starter.inputs import input_problems
from starter.templates import param_values, render_template
from tests.engine import dag_worker, eventually, progress, start_dag
from worker.worker import build_worker
from workflows.definition import Definition
from workflows.validation import validate_definition

EXAMPLES: dict[str, Any] = dict(reference.examples())
SHOP_TOKEN = "shop-token-4e1"
PARTNER_HOOK = "whsec-partner-93a"


def definition(name: str) -> Definition:
    result = validate_definition(EXAMPLES[name], known_kinds())
    assert result.definition is not None, result.problems
    return result.definition


# --- the generated file ---------------------------------------------------------------------


def test_reference_md_is_generated() -> None:
    assert reference.check(), "docs/reference.md is stale: run `python -m starter.reference`"


def test_generator_check_flag_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    assert reference.main(["--check"]) == 0


def test_every_field_of_the_schema_is_in_a_table() -> None:
    text = reference.Sources().output.read_text(encoding="utf-8")
    schema = reference.definition_json_schema()
    models = {"Definition": schema, **schema["$defs"]}
    for model, node in models.items():
        assert f"<!-- fields: {model} -->" in reference.Sources().template.read_text(), model
        for name in node.get("properties", {}):
            assert f"| `{name}` |" in text, f"{model}.{name}"


def test_links_point_at_headings() -> None:
    text = reference.Sources().output.read_text(encoding="utf-8")
    assert reference.broken_links(text) == []


# --- every example validates ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_validates(name: str) -> None:
    result = validate_definition(EXAMPLES[name], known_kinds())
    assert result.ok, [str(p) for p in result.problems]


def test_template_instantiates() -> None:
    data = EXAMPLES["template"]
    values = param_values(definition("template").params or {}, {"team": "ops"})
    rendered = render_template(data, "notify-ops", values)
    result = validate_definition(rendered, known_kinds())
    assert result.definition is not None, result.problems
    assert rendered["description"] == "Tell ops about an order"
    post = result.definition.steps["post"].with_
    assert post["url"] == "https://hooks.example/notify"
    assert post["json"] == {"text": "order ${{ input.order }} for ops", "retries": 3}


def test_starter_md_shows_the_template_example() -> None:
    """docs/starter.md stores docs/reference/examples/template.yaml as "the template above"."""
    starter_md = (reference.ROOT / "docs" / "starter.md").read_text(encoding="utf-8")
    example = (reference.Sources().examples / "template.yaml").read_text(encoding="utf-8")
    assert f"```yaml\n{example}```" in starter_md


def test_input_schema_rejects_bad_input() -> None:
    problems = input_problems(definition("input"), {"order_id": "B-1", "parcels": 0, "x": 1})
    assert problems == [
        "input: Additional properties are not allowed ('x' was unexpected)",
        "input.order_id: 'B-1' does not match '^A-[0-9]+$'",
        "input.parcels: 0 is less than the minimum of 1",
    ]


# --- every example runs -----------------------------------------------------------------------


@dataclass
class Shop:
    """The local HTTP server the http and webhook examples call."""

    url: str
    hooks: list[dict[str, Any]] = field(default_factory=list)
    seen_tokens: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
async def shop() -> AsyncIterator[Shop]:
    state = Shop("")

    async def order(request: web.Request) -> web.Response:
        state.seen_tokens.append(request.headers.get("Authorization", ""))
        if request.match_info["order"] != "A-1001":
            return web.json_response({"error": "no such order"}, status=404)
        expand = request.query.getall("expand", [])
        items = [{"sku": "kettle"}, {"sku": "mug"}]
        return web.json_response({"id": "A-1001", "items": items, "expand": expand})

    async def label(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"label": f"L-{body['order']}-{body['parcels']}"}, status=201)

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        ok = verify_signature(
            PARTNER_HOOK,
            request.headers["X-Dagflow-Timestamp"],
            raw,
            request.headers["X-Dagflow-Signature"],
        )
        if not ok:
            return web.json_response({"error": "bad signature"}, status=401)
        state.hooks.append({"event": request.headers["X-Dagflow-Event"], **json.loads(raw)})
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/orders/{order}", order)
    app.router.add_post("/labels", label)
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("")).rstrip("/")
    try:
        yield state
    finally:
        await server.close()


@pytest.fixture(scope="module")
async def worker(client: Client) -> AsyncIterator[Worker]:
    """A worker like ``dagflow worker --allow-network 127.0.0.0/8`` with the test plugin and
    the secrets the examples name."""
    secrets = SecretStore(
        environ={
            "DAGFLOW_SECRET_SHOP_TOKEN": SHOP_TOKEN,
            "DAGFLOW_SECRET_PARTNER_HOOK": PARTNER_HOOK,
        }
    )
    http = HttpClient(guard=AddressGuard(["127.0.0.0/8"]))
    kinds = {**builtin_step_activities(client=http, secrets=secrets), **load_plugins()}
    async with dag_worker(client, list(kinds.values()), [LinearBackoffInterceptor()]) as w:
        yield w
    await http.close()


Act = Callable[[WorkflowHandle[Any, Any]], Awaitable[None]]


@dataclass
class Case:
    """How an example is run, and what it must give."""

    input: Any = None
    output: Any = None
    error: str | None = None
    """A failed run: the start of the failure's message."""
    act: Act | None = None
    """What an operator does while the run goes (send an event, retry a step)."""
    library: tuple[str, ...] = ()
    """Examples that workflow steps run, by their definition name and name@1."""
    check: Callable[[Any], None] | None = None
    """More checks of the output."""


async def _send_approval(handle: WorkflowHandle[Any, Any]) -> None:
    await handle.signal("send_event", {"name": "approved", "payload": {"by": "ann"}})


async def _retry_charge(handle: WorkflowHandle[Any, Any]) -> None:
    async def parked() -> bool:
        steps = {s.step: s for s in (await progress(handle)).steps}
        return steps["charge"].status == "needs_attention"

    await eventually(parked, within=20)
    answer = await handle.execute_update("retry_step", {"step": "charge", "with": {"failures": 0}})
    assert answer == {"step": "charge", "action": "retry"}


def _retry_waits(output: Any) -> None:
    assert output == {"crm": 3, "billing": 3, "warehouse": 3, "payments": 1, "mailer": "failed"}


CASES: dict[str, Case] = {
    "kind-http": Case(
        input={"order_id": "A-1001"},
        output={"found": True, "label": {"label": "L-A-1001-2"}},
    ),
    "kind-webhook": Case(input={"order_id": "A-1001"}, output=204),
    "protect": Case(input={}, output=3),
    "kind-transform": Case(
        input={
            "lines": [
                {"sku": "kettle", "price": 30, "qty": 1},
                {"sku": "mug", "price": 6, "qty": 12},
            ]
        },
        output={"lines": 2, "amounts": [30, 72], "bulky": True, "note": "order of 2 lines"},
    ),
    "kind-validate": Case(input={"order_id": "A-1001", "amount": 4200}, output=4200),
    "kind-wait": Case(
        input={"ship_after": "2020-01-01T00:00:00Z"}, output={"by": "ann"}, act=_send_approval
    ),
    "kind-workflow": Case(output=120.0, library=("kind-workflow-child",)),
    "kind-plugin": Case(input={"name": "ann"}, output="HELLO, ANN"),
    "needs": Case(output=220),
    "if": Case(input={"delivery": "pickup"}, output="ready at the counter"),
    "trigger-rule": Case(
        output={"check": "failed", "load": "skipped", "notify": "succeeded", "cleanup": "succeeded"}
    ),
    "for-each": Case(
        input={
            "items": [
                {"sku": "kettle", "qty": 1},
                {"sku": "mug", "qty": 2},
                {"sku": "tea", "qty": 3},
            ]
        },
        output={"reserved": ["0: 1 X KETTLE", "1: 2 X MUG", "2: 3 X TEA"], "count": 3},
    ),
    "timeouts": Case(output="PARCEL 1 OF 1"),
    "retry": Case(check=_retry_waits),
    "on-error": Case(
        output={
            "geo": "failed",
            "loyalty": "skipped",
            "price": "succeeded",
            "price_source": "list price",
        }
    ),
    "on-error-fail": Case(input={"orders": []}, error="step 'check' failed: "),
    "on-error-manual": Case(output="paid on attempt 1", act=_retry_charge),
    "task-queue": Case(output="QUARTERLY REPORT"),
    "summary": Case(output="PACKED"),
    "execution": Case(output="LABEL PRINTED"),
    "defaults": Case(output=["NORTH", "SOUTH", "EAST", "WEST"]),
    "run-timeout": Case(error="run timed out"),
    "input": Case(
        input={"order_id": "A-1001", "express": True},
        output={"order": "A-1001", "parcels": 1, "express": True},
    ),
    "output": Case(
        output={"order": "A-1001", "total": 42.0, "items": 2, "text": 'A-1001: ["kettle","mug"]'}
    ),
    "expressions": Case(
        input={"words": ["to", "be"]},
        output={
            "input": ["to", "be"],
            "output": 20,
            "status": "succeeded",
            "items": ["0:to", "1:be"],
            "run": ["acme", "scope-tour", "1"],
            "is_run_id": True,
        },
    ),
}
NOT_RUN = {
    "kind-workflow-child": "runs as kind-workflow's child",
    "template": "a template: test_template_instantiates renders it",
}


def test_every_example_runs() -> None:
    assert set(EXAMPLES) == set(CASES) | set(NOT_RUN)
    assert not set(CASES) & set(NOT_RUN)


@pytest.mark.parametrize("name", sorted(CASES))
async def test_example_runs(name: str, client: Client, worker: Worker, shop: Shop) -> None:
    case = CASES[name]
    run_input = case.input
    if name in ("kind-http", "kind-webhook", "protect"):
        run_input = {**run_input, "shop_url": shop.url, "hook_url": f"{shop.url}/hook"}
    library = {}
    for child in case.library:
        child_definition = definition(child)
        library[child_definition.name] = child_definition
        library[f"{child_definition.name}@1"] = child_definition
    async with _capability_worker(client, name):
        handle = await start_dag(client, worker, definition(name), run_input, library=library)
        if case.act is not None:
            await case.act(handle)
        if case.error is not None:
            with pytest.raises(WorkflowFailureError) as failed:
                await asyncio.wait_for(handle.result(), 60)
            cause = failed.value.cause
            assert isinstance(cause, ApplicationError)
            assert cause.message.startswith(case.error), cause.message
            return
        output = await asyncio.wait_for(handle.result(), 60)
    if case.check is not None:
        case.check(output)
    else:
        assert output == case.output
    if name == "kind-http":
        assert shop.seen_tokens[-1] == f"Bearer {SHOP_TOKEN}"
    if name == "kind-webhook":
        assert shop.hooks[-1] == {"event": "order.paid", "order": "A-1001", "paid": True}
    if name == "summary":
        history = await handle.fetch_history()
        summaries = [
            json.loads(event.user_metadata.summary.data)
            for event in history.events
            if event.HasField("activity_task_scheduled_event_attributes")
        ]
        assert summaries == ["pack: Pack the parcel"]
    if name == "execution":
        history = await handle.fetch_history()
        regular = [
            event.activity_task_scheduled_event_attributes.activity_id
            for event in history.events
            if event.HasField("activity_task_scheduled_event_attributes")
        ]
        local = [
            json.loads(event.user_metadata.summary.data)
            for event in history.events
            if event.HasField("marker_recorded_event_attributes")
        ]
        assert (regular, local) == (["print"], ["label", "notify"])


async def test_http_example_with_an_unknown_order(
    client: Client, worker: Worker, shop: Shop
) -> None:
    """The reference says: a 404 in ok_status succeeds, label is skipped, its output null."""
    run_input = {"order_id": "A-404", "shop_url": shop.url}
    handle = await start_dag(client, worker, definition("kind-http"), run_input)
    assert await asyncio.wait_for(handle.result(), 60) == {"found": False, "label": None}


async def test_run_timeout_message(client: Client, worker: Worker) -> None:
    """The reference quotes the message and the error type of a run that timed out."""
    handle = await start_dag(client, worker, definition("run-timeout"))
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), 60)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.type, cause.message) == ("RunTimedOut", "run timed out after 2s")


async def test_trigger_rule_note(client: Client, worker: Worker) -> None:
    """The reference quotes the note of a step whose trigger rule is not met."""
    handle = await start_dag(client, worker, definition("trigger-rule"))
    await asyncio.wait_for(handle.result(), 60)
    notes = {s.step: s.note for s in (await progress(handle)).steps}
    assert notes["load"] == "trigger rule all_succeeded not met (check failed)"


def _capability_worker(client: Client, name: str) -> Any:
    """For task-queue: an activity-only worker on the queue the step names."""
    if name != "task-queue":
        return _nothing()
    queue = definition(name).steps["render"].task_queue
    assert queue is not None
    return build_worker(
        client, task_queue=queue, activities=list(load_plugins().values()), workflows=False
    )


class _nothing:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def test_names_are_unique() -> None:
    assert len({EXAMPLES[name]["name"] for name in EXAMPLES}) == len(EXAMPLES)
