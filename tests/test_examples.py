"""Every definition in examples/ runs to completion against the demo services on a free port,
on a real worker built like `dagflow worker` (with the 127.0.0.0/8 guard opened, as in
`dagflow dev`); docs/examples.md's commands run as written; the schema file stays current."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.worker import Worker

from activities.webhook import signed_headers
from starter import demo as demo_services
from starter.demo import Demo
from starter.files import known_kinds, read_definition, resolve_library, validate_file
from starter.launch import start_run
from tests.engine import eventually, progress
from tests.test_cli_engine import dagflow
from worker.main import http_client, make_worker
from worker.settings import Settings
from workflows.types import RunStatus, StepStatus

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCHEMA_LINE = "# yaml-language-server: $schema=../dagflow.schema.json"
SECRET = f"whsec_{uuid.uuid4().hex}"
TENANT = "examples"


@pytest.fixture
async def demo() -> AsyncIterator[Demo]:
    """The demo services on a free port of 127.0.0.1."""
    services = await demo_services.start(webhook_secret=SECRET)
    yield services
    await services.stop()


@pytest.fixture
def secrets_file(tmp_path: Path) -> Path:
    """The worker's secrets: the webhook signing secret the demo inboxes verify with."""
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"*": {"webhook": SECRET}}))
    return path


@pytest.fixture
async def worker(client: Client, secrets_file: Path) -> AsyncIterator[Worker]:
    """A worker like `dagflow dev`'s: every step kind, loopback allowed, the secrets file."""
    settings = Settings(
        task_queue=f"tq-{uuid.uuid4()}",
        allowed_networks=["127.0.0.0/8"],
        secrets_file=str(secrets_file),
        shutdown_grace=1,
    )
    http = http_client(settings)
    async with make_worker(client, settings, http) as running:
        yield running
    await http.close()


async def run_example(
    client: Client, worker: Worker, name: str, run_input: Any
) -> WorkflowHandle[Any, Any]:
    """Start examples/<name>.yaml as `dagflow run` does (children from the same folder)."""
    definition = read_definition(EXAMPLES / f"{name}.yaml", known_kinds())
    library = resolve_library(definition, [EXAMPLES], known_kinds())
    handle, _ = await start_run(
        client, definition, run_input, task_queue=worker.task_queue, tenant=TENANT, library=library
    )
    return handle


async def step_status(handle: WorkflowHandle[Any, Any], step: str) -> StepStatus:
    return next(s.status for s in (await progress(handle)).steps if s.step == step)


def example_files() -> list[Path]:
    return sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".yml", ".json"))


# --- the files ---------------------------------------------------------------------------------


def test_every_example_names_the_schema_says_what_it_shows_and_validates() -> None:
    assert len(example_files()) >= 5
    for path in example_files():
        lines = path.read_text().splitlines()
        assert lines[0] == SCHEMA_LINE, path.name
        comment = [line for line in lines[1:] if line.startswith("#")]
        assert any("dagflow run" in line for line in comment), f"{path.name}: how to run it"
        assert len(comment) >= 4, f"{path.name}: a top comment saying what it shows"
        report = validate_file(str(path), known_kinds())
        assert report.ok, report.lines()
        assert report.definition is not None and report.definition.name == path.stem


async def test_dagflow_validate_accepts_every_example() -> None:
    code, out, err = await dagflow("validate", *map(str, example_files()))
    assert code == 0, err
    assert out.count(": ok (") == len(example_files())


async def test_the_committed_schema_is_what_dagflow_schema_prints() -> None:
    code, out, err = await dagflow("schema")
    assert code == 0, err
    committed = (ROOT / "dagflow.schema.json").read_text()
    assert committed == out, "dagflow.schema.json is stale: dagflow schema > dagflow.schema.json"


def test_every_example_has_a_run_test_here() -> None:
    source = Path(__file__).read_text()
    for path in example_files():
        assert f'"{path.stem}"' in source, f"no test runs {path.name}"


# --- (1) order fulfilment ----------------------------------------------------------------------


async def test_order_fulfilment_small_order_is_charged_and_reserved(
    client: Client, worker: Worker, demo: Demo
) -> None:
    handle = await run_example(
        client, worker, "order-fulfilment", {"order_id": "A-1001", **shop(demo)}
    )
    output = await handle.result()
    assert output == {
        "order": "A-1001",
        "outcome": "fulfilled",
        "approved_by": None,
        "charge": demo.shop.charges[0]["charge_id"],
        "amount": 4200,
        "refund": None,
        "reserved": 3,
    }
    assert [c["amount"] for c in demo.shop.charges] == [4200]
    assert demo.shop.charges[0]["idempotency_key"] == f"{handle.id}/charge"
    assert sorted(r["sku"] for r in demo.shop.reservations) == ["kettle", "mug", "tea"]
    assert demo.shop.refunds == []
    assert await step_status(handle, "approval") == StepStatus.SKIPPED


async def test_order_fulfilment_big_order_waits_for_approval(
    client: Client, worker: Worker, demo: Demo
) -> None:
    handle = await run_example(
        client, worker, "order-fulfilment", {"order_id": "A-1002", **shop(demo)}
    )

    async def waiting() -> bool:
        return (await progress(handle)).status == RunStatus.WAITING

    await eventually(waiting, within=20)
    assert demo.shop.charges == [], "nothing is charged before the approval"
    await handle.execute_update("send_event", {"name": "approved", "payload": {"by": "ann"}})
    output = await handle.result()
    assert output["outcome"] == "fulfilled"
    assert output["approved_by"] == {"by": "ann"}
    assert [c["amount"] for c in demo.shop.charges] == [38900]
    assert demo.shop.stock["espresso-machine"] == 99


async def test_order_fulfilment_out_of_stock_refunds_the_charge(
    client: Client, worker: Worker, demo: Demo
) -> None:
    handle = await run_example(
        client, worker, "order-fulfilment", {"order_id": "A-1003", **shop(demo)}
    )
    output = await handle.result()
    [charge] = demo.shop.charges
    [refund] = demo.shop.refunds
    assert refund["charge_id"] == charge["charge_id"] and refund["amount"] == 5600
    assert charge["status"] == "refunded"
    assert output["outcome"] == "refunded"
    assert output["refund"] == refund["refund_id"] and output["reserved"] == 0
    assert all(r["status"] == "released" for r in demo.shop.reservations)
    assert demo.shop.stock["mug"] == demo_services.shop.STOCK["mug"]
    reserve = next(s for s in (await progress(handle)).steps if s.step == "reserve")
    assert reserve.status == StepStatus.SUCCEEDED and reserve.fallback == "refund"
    assert reserve.error is not None and "teapot is out of stock" in reserve.error


def shop(demo: Demo) -> dict[str, str]:
    return {"shop_url": demo.urls()["shop_url"]}


# --- (2) webhook fan-out -----------------------------------------------------------------------


async def test_webhook_fanout_delivers_signed_events_once_to_every_subscriber(
    client: Client, worker: Worker, demo: Demo
) -> None:
    data = {"order": "A-1001", "total": 4200}
    handle = await run_example(
        client,
        worker,
        "webhook-fanout",
        {"hooks_url": demo.urls()["hooks_url"], "event": "order.paid", "data": data},
    )
    output = await handle.result()
    assert output == {
        "event": "order.paid",
        "subscribers": ["crm", "analytics", "mailer"],
        "delivered": 3,
    }
    deliveries = demo.hooks.verified()
    assert sorted(d["subscriber"] for d in deliveries) == ["analytics", "crm", "mailer"]
    assert demo.hooks.rejected == 0
    for delivery in deliveries:
        assert delivery["event"] == "order.paid"
        assert delivery["payload"] == {
            "event": "order.paid",
            "subscriber": delivery["subscriber"],
            "data": data,
        }
    [mailer] = demo.hooks.verified("mailer")
    assert demo.hooks.attempts[mailer["key"]] == 2, "the flaky inbox saw a retry, same key"
    assert len({d["key"] for d in deliveries}) == 3


async def test_the_demo_inbox_refuses_a_bad_signature(demo: Demo) -> None:
    body = b'{"event": "order.paid"}'
    url = f"{demo.urls()['hooks_url']}/inbox/crm"
    async with aiohttp.ClientSession() as http:
        forged = signed_headers("not-the-secret", body)
        async with http.post(url, data=body, headers=forged) as answer:
            assert answer.status == 401
        async with http.post(url, data=body, headers=signed_headers(SECRET, body)) as answer:
            assert answer.status == 202
    assert demo.hooks.rejected == 1 and len(demo.hooks.verified("crm")) == 1


# --- (3) ETL -----------------------------------------------------------------------------------


async def test_etl_loads_the_transformed_rows(client: Client, worker: Worker, demo: Demo) -> None:
    handle = await run_example(
        client, worker, "etl-orders", {"etl_url": demo.urls()["etl_url"], "day": "2026-11-22"}
    )
    output = await handle.result()
    assert output == {
        "day": "2026-11-22",
        "batch": "orders-2026-11-22",
        "extracted": 4,
        "loaded": 3,
    }
    assert demo.etl.batches["orders-2026-11-22"] == [
        {"order_id": "A-1001", "amount": 42.0, "currency": "EUR", "customer": "ada@example.com",
         "tier": "standard", "day": "2026-11-22"},
        {"order_id": "A-1002", "amount": 389.0, "currency": "EUR", "customer": "bob@example.com",
         "tier": "large", "day": "2026-11-22"},
        {"order_id": "A-1004", "amount": 12.5, "currency": "USD", "customer": "dee@example.com",
         "tier": "standard", "day": "2026-11-22"},
    ]  # fmt: skip


async def test_etl_stops_at_validation_listing_every_bad_field(
    client: Client, worker: Worker, demo: Demo
) -> None:
    handle = await run_example(
        client, worker, "etl-orders", {"etl_url": demo.urls()["etl_url"], "day": "2026-11-23"}
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    message = str(failed.value.cause)
    assert "step 'check' failed" in message
    assert "$[1].amount_cents: '12.50' is not of type 'integer'" in message
    assert "$[1]: 'email' is a required property" in message
    assert demo.etl.batches == {} and demo.etl.loads == 0
    assert next(s for s in (await progress(handle)).steps if s.step == "check").attempts == 1


# --- (4) manual recovery -----------------------------------------------------------------------


async def test_ledger_sync_parks_while_the_ledger_is_down_and_a_retry_completes_it(
    client: Client, worker: Worker, demo: Demo
) -> None:
    handle = await run_example(
        client,
        worker,
        "ledger-sync",
        {
            "ledger_url": demo.urls()["ledger_url"],
            "day": "2026-11-22",
            "lines": [{"account": "sales", "amount": 4200}, {"account": "fees", "amount": -150}],
        },
    )

    async def parked() -> bool:
        return (await progress(handle)).status == RunStatus.NEEDS_ATTENTION

    await eventually(parked, within=30)
    book = next(s for s in (await progress(handle)).steps if s.step == "book")
    assert book.status == StepStatus.NEEDS_ATTENTION and book.attempts == 2
    assert book.error is not None and "503" in book.error
    assert demo.ledger.refused == 2 and demo.ledger.entries == {}

    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{demo.urls()['ledger_url']}/recover") as answer,
    ):
        assert answer.status == 200
    ack = await handle.execute_update("retry_step", {"step": "book"})
    assert ack == {"step": "book", "action": "retry"}
    output = await handle.result()
    assert output == {"entry": "close-2026-11-22", "total": 4050, "status": "booked"}
    assert list(demo.ledger.entries) == ["close-2026-11-22"]


# --- (5) composition ---------------------------------------------------------------------------


async def test_daily_close_runs_two_examples_as_child_runs(
    client: Client, worker: Worker, demo: Demo
) -> None:
    urls = demo.urls()
    handle = await run_example(
        client,
        worker,
        "daily-close",
        {"etl_url": urls["etl_url"], "hooks_url": urls["hooks_url"], "day": "2026-11-22"},
    )
    output = await handle.result()
    assert output == {"day": "2026-11-22", "loaded": 3, "notified": ["analytics"]}
    assert len(demo.etl.batches["orders-2026-11-22"]) == 3
    [announced] = demo.hooks.verified()
    assert announced["subscriber"] == "analytics" and announced["event"] == "orders.loaded"
    assert announced["payload"]["data"] == {
        "day": "2026-11-22", "batch": "orders-2026-11-22", "extracted": 4, "loaded": 3,
    }  # fmt: skip
    children = [w.id async for w in client.list_workflows(f"ParentWorkflowId = '{handle.id}'")]
    assert sorted(children) == [f"{handle.id}/announce", f"{handle.id}/load"]


# --- (6) parallel branches and a join ----------------------------------------------------------


@pytest.mark.parametrize(
    ("express", "cheapest", "quotes"),
    [(False, "parcelco", 1), (True, "parcelco", 2)],
)
async def test_shipping_quote_joins_the_branches_that_answered(
    client: Client, worker: Worker, demo: Demo, express: bool, cheapest: str, quotes: int
) -> None:
    run_input = {"shop_url": demo.urls()["shop_url"], "kg": 2.5, "to": "NL", "express": express}
    handle = await run_example(client, worker, "shipping-quote", run_input)
    output = await handle.result()
    assert output["cheapest"] == {"carrier": cheapest, "price": 750, "days": 3, "to": "NL"}
    assert output["quotes"] == quotes
    assert output["unavailable"] == ["slowpost"]
    assert demo.shop.quotes.count("slowpost") == 2, "slowpost was retried, then given up"
    assert ("zoom" in demo.shop.quotes) is express


# --- docs/examples.md ---------------------------------------------------------------------------


DOC_COVERED_ELSEWHERE = {"dagflow dev": "tests/test_cli_engine.py runs `dagflow dev` (--once)"}


def doc_commands() -> list[tuple[str, int]]:
    """The commands of docs/examples.md's ```sh blocks, each with the exit status it should
    have (0, or N when its comment says ``# exits N``)."""
    text = (ROOT / "docs" / "examples.md").read_text()
    commands: list[tuple[str, int]] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", "", block).splitlines():
            command, _, comment = line.partition("  #")
            exits = re.search(r"exits (\d+)", comment)
            if command.strip():
                commands.append((command.strip(), int(exits.group(1)) if exits else 0))
    return commands


async def test_the_commands_in_docs_examples_run_as_written(
    client: Client, worker: Worker, demo: Demo, temporal_address: str
) -> None:
    """Each command of docs/examples.md runs as a user would type it with `dagflow dev` up,
    with the demo services' address replaced by this test's and Temporal and the task queue
    set in the environment (a progress query first waits, as the person reading it would,
    for the step to park); then the services show what each example did."""
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "DAGFLOW_TEMPORAL_ADDRESS": temporal_address,
        "DAGFLOW_TASK_QUEUE": worker.task_queue,
        "TEMPORAL_ADDRESS": temporal_address,
    }
    commands = doc_commands()
    assert len(commands) >= 10
    outputs: dict[str, str] = {}
    for command, expected in commands:
        if command in DOC_COVERED_ELSEWHERE:
            continue
        assert command.split()[0] in ("dagflow", "temporal", "curl"), command
        line = command.replace("127.0.0.1:8288", demo.url.removeprefix("http://"))
        looked_at = re.search(r"--workflow-id (\S+) --name progress", line)
        if looked_at:  # where the doc has a person look until the step is parked
            await eventually(parked(client, looked_at.group(1)), within=60)
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", line, cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == expected, f"{line}\n{out.decode()}{err.decode()}"
        outputs[command] = out.decode() + err.decode()

    assert [r["order"] for r in demo.shop.refunds] == ["A-1003"]
    assert sorted(c["order"] for c in demo.shop.charges) == ["A-1001", "A-1002", "A-1003"]
    assert sorted(d["subscriber"] for d in demo.hooks.verified()) == [
        "analytics", "analytics", "crm", "mailer",
    ]  # fmt: skip
    assert demo.hooks.rejected == 0
    assert list(demo.etl.batches) == ["orders-2026-11-22"]
    assert list(demo.ledger.entries) == ["close-2026-11-22"]
    assert "slowpost" in demo.shop.quotes and "zoom" in demo.shop.quotes
    said = "\n".join(outputs.values())
    assert '"outcome": "refunded"' in said and '"approved_by": {' in said
    assert "step 'check' failed" in said and '"status": "booked"' in said


def parked(client: Client, workflow_id: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        handle = client.get_workflow_handle(workflow_id)
        return (await progress(handle)).status == RunStatus.NEEDS_ATTENTION

    return check
