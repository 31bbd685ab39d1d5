"""The Temporal Web UI as the operators' console, in a real browser (Debian's headless
chromium, driven by Playwright).

One module-wide stack: a dev server with its Web UI, the starter (SQLite) with payload
encryption and its codec server, a worker. Two tenants run a completed, a parked and (one of
them) a failed DAG through the starter. The browser then:

- lists the runs filtered by ``TenantId`` and by ``DagStatus="NeedsAttention"``;
- opens a parked run's event history, where the step ids and their summaries appear, and the
  history of a run whose step ran as a local activity (``execution: local``);
- signs in to the codec server at ``/codec/session`` with a tenant key, points the Web UI at
  it, and sees that run's input decoded, where before it saw ciphertext.

Screenshots go to ``tests/artifacts/web-ui/`` (kept by CI as artifacts, and looked at).
"""

from __future__ import annotations

import base64
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from temporalio.client import Client, WorkflowExecutionStatus

from activities.registry import load_plugins
from starter.devserver import DevServer, start_dev_server
from tests.engine import dag_worker, eventually
from tests.starter import Databases, Starter, running, service_settings
from worker.client import connect
from worker.codec import Keyring

CHROMIUM = "/usr/bin/chromium"
expect.set_options(timeout=30_000)  # the dev server's UI is slow on a loaded machine
ARTIFACTS = Path(__file__).parent / "artifacts" / "web-ui"
KEYS = f"k1:{base64.b64encode(b'web-ui-test-key-0123456789abcdef'[:32]).decode()}"
CANARY = "card-4242-canary"
"""In every run's input: encrypted in history, readable only through the codec server."""
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

SHIP = {"name": "ship", "input": {"type": "object"},
        "steps": {"label": {"uses": "shout", "with": {"text": "${{ input.card }}"},
                            "summary": "print the label"}}}  # fmt: skip
CHARGE = {"name": "charge", "input": {"type": "object"},
          "steps": {"charge": {"uses": "flaky", "with": {"failures": 99},
                               "retry": {"max_attempts": 1}, "on_error": "manual",
                               "summary": "charge the card"}}}  # fmt: skip
PACK = {"name": "pack", "input": {"type": "object"},
        "steps": {"pack": {"uses": "shout", "with": {"text": "parcel"}, "execution": "local",
                           "summary": "pack the parcel"}}}  # fmt: skip
REFUND = {"name": "refund", "input": {"type": "object"},
          "steps": {"refund": {"uses": "flaky", "with": {"failures": 99},
                               "retry": {"max_attempts": 1},
                               "summary": "refund the card"}}}  # fmt: skip


@dataclass
class Console:
    """The running stack and what the runs are."""

    ui: str
    starter: Starter
    client: Client
    keys: dict[str, str]
    runs: dict[tuple[str, str], str]
    """Workflow id by (tenant, definition)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
async def console(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    root = tmp_path_factory.mktemp("web-ui")
    ui_port = free_port()
    server: DevServer = await start_dev_server(root / "temporal", port=free_port(), ui_port=ui_port)
    ui = f"http://127.0.0.1:{ui_port}"
    try:
        address = server.address
        client = await connect(address, keyring=Keyring.parse(KEYS))
        settings = service_settings(
            await Databases("sqlite", root / "db").fresh(),
            address,
            encryption_keys=KEYS,
            codec_cors_origins=ui,
            task_queue=f"tq-{uuid.uuid4()}",
        )
        plugins = list(load_plugins().values())
        async with (
            running(settings) as starter,
            dag_worker(client, plugins, task_queue=settings.task_queue),
        ):
            yield await _run_dags(starter, client, ui)
    finally:
        await server.stop()


async def _run_dags(starter: Starter, client: Client, ui: str) -> Console:
    keys: dict[str, str] = {}
    runs: dict[tuple[str, str], str] = {}
    plans = {"acme": [SHIP, CHARGE, REFUND], "globex": [SHIP, CHARGE, PACK]}
    admin = starter.instance()
    apis = {}
    for tenant, definitions in plans.items():
        await admin.instance.create_tenant(tenant)
        keys[tenant] = (await admin.instance.create_key("console", tenant=tenant)).key
        api = apis[tenant] = starter.client(keys[tenant])
        for definition in definitions:
            await api.definitions.create(definition)
            ref = await api.runs.start(definition["name"], {"card": f"{CANARY}-{tenant}"})
            runs[(tenant, definition["name"])] = ref.workflow_id
    expected = {
        "ship": "completed",
        "charge": "needs_attention",
        "refund": "failed",
        "pack": "completed",
    }

    async def settled() -> bool:
        for tenant, name in runs:
            run = f"{name}/{runs[(tenant, name)].rsplit('/', 1)[1]}"
            detail = await apis[tenant].runs.get(run)
            if detail.status.value != expected[name]:
                return False
        return True

    await eventually(settled, within=60, interval=0.5)

    # visibility is eventually consistent: wait until the list query sees the parked runs
    async def listed() -> bool:
        found = [w async for w in client.list_workflows('DagStatus = "NeedsAttention"')]
        return len(found) == 2

    await eventually(listed, within=30, interval=0.5)
    return Console(ui, starter, client, keys, runs)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    made = await browser.new_context(viewport={"width": 1440, "height": 1000})
    made.set_default_timeout(30_000)
    try:
        yield made
    finally:
        await made.close()


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def workflows_url(console: Console, query: str) -> str:
    return f"{console.ui}/namespaces/default/workflows?query={quote(query)}"


async def listed_ids(page: Page, expected: int) -> set[str]:
    """The workflow ids the list shows, once it shows ``expected`` rows."""
    rows = page.locator("table tbody tr")
    await expect(rows).to_have_count(expected, timeout=30_000)  # after the loading skeleton
    text = await page.locator("table tbody").inner_text()
    return {word for word in text.split() if "/" in word}


async def test_workflow_list_filtered_by_tenant_and_status(
    console: Console, context: BrowserContext
) -> None:
    page = await context.new_page()
    await page.goto(workflows_url(console, 'TenantId = "acme"'))
    ids = await listed_ids(page, 3)
    await shot(page, "1-list-tenant-acme")
    acme = {wid for (tenant, _), wid in console.runs.items() if tenant == "acme"}
    assert acme <= ids, f"acme's runs listed: {ids}"
    assert not any(wid.startswith("globex/") for wid in ids)
    for name, status in (("ship", "Completed"), ("charge", "Running"), ("refund", "Failed")):
        row = page.get_by_role("row").filter(has_text=console.runs[("acme", name)])
        await expect(row).to_contain_text(status)

    await page.goto(workflows_url(console, 'DagStatus = "NeedsAttention"'))
    ids = await listed_ids(page, 2)
    await shot(page, "2-list-needs-attention")
    assert {console.runs[("acme", "charge")], console.runs[("globex", "charge")]} <= ids

    await page.goto(workflows_url(console, 'TenantId = "globex" AND DagStatus = "NeedsAttention"'))
    ids = await listed_ids(page, 1)
    await shot(page, "3-list-globex-needs-attention")
    assert console.runs[("globex", "charge")] in ids


async def history_page(console: Console, page: Page, tenant: str, name: str) -> None:
    """Open a run from the list, as an operator does: filter, click its workflow id."""
    workflow_id = console.runs[(tenant, name)]
    await page.goto(workflows_url(console, f'WorkflowId = "{workflow_id}"'))
    await listed_ids(page, 1)
    await page.get_by_role("link", name=workflow_id).click()
    await page.get_by_role("tab", name="History").first.click()


async def sign_in_to_codec(console: Console, page: Page, tenant: str, name: str) -> None:
    """Sign in at the starter's /codec/session with ``tenant``'s key, then point this
    browser's Web UI at the codec server, as the page says."""
    await page.goto(f"{console.starter.base_url}/codec/session")
    await page.get_by_label("API key").fill(console.keys[tenant])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#signed-in")).to_contain_text(f"tenant {tenant}")
    await shot(page, f"{name}-codec-session")
    await _set_codec_endpoint(console, page, f"{console.starter.base_url}/codec", name)


async def test_event_history_shows_step_ids_and_summaries(
    console: Console, context: BrowserContext
) -> None:
    page = await context.new_page()
    await sign_in_to_codec(console, page, "acme", "4")
    await history_page(console, page, "acme", "charge")
    scheduled = page.get_by_role("row").filter(has_text="Activity Task Scheduled")
    await expect(scheduled).to_have_count(1)
    await expect(scheduled).to_contain_text("charge the card")  # the step's summary, decoded
    await scheduled.click()  # expand it: the activity id is the step id
    details = page.get_by_text("Activity ID").locator("xpath=..")
    await expect(details.first).to_contain_text("charge")
    await shot(page, "4-history-parked-run")
    described = await console.client.get_workflow_handle(
        console.runs[("acme", "charge")]
    ).describe()
    assert described.status == WorkflowExecutionStatus.RUNNING, "parked, not ended"


async def test_event_history_shows_a_local_step_by_id_and_summary(
    console: Console, context: BrowserContext
) -> None:
    page = await context.new_page()
    await sign_in_to_codec(console, page, "globex", "9")
    await history_page(console, page, "globex", "pack")
    await loaded(page)
    marker = page.get_by_role("row").filter(has_text="Local Activity")
    await expect(marker).to_have_count(1)
    await expect(marker).to_contain_text("shout")  # the step's kind
    await expect(marker).to_contain_text("pack: pack the parcel")  # step id: summary, decoded
    await shot(page, "9-history-local-step")
    text = await page.locator("main").inner_text()
    assert "Activity Task Scheduled" not in text


async def loaded(page: Page) -> None:
    """Wait for a completed run's history, and for the codec calls to have answered."""
    await expect(page.get_by_text("Workflow Execution Completed").first).to_be_visible()
    await page.wait_for_load_state("networkidle")


async def test_codec_session_shows_decoded_input(console: Console, context: BrowserContext) -> None:
    page = await context.new_page()
    # without a codec session the input is ciphertext
    await history_page(console, page, "acme", "ship")
    await loaded(page)
    await shot(page, "5-history-encrypted")
    assert CANARY not in await page.locator("main").inner_text()

    await sign_in_to_codec(console, page, "acme", "6")
    await history_page(console, page, "acme", "ship")
    await expect(page.get_by_text(f"{CANARY}-acme").first).to_be_visible()
    await shot(page, "7-history-decoded")

    # another tenant's payloads stay encrypted for acme's session
    await history_page(console, page, "globex", "ship")
    await loaded(page)
    await shot(page, "8-history-other-tenant")
    assert CANARY not in await page.locator("main").inner_text()


async def _set_codec_endpoint(console: Console, page: Page, endpoint: str, name: str) -> None:
    """The Web UI's codec settings for this browser: the endpoint, with credentials."""
    await page.goto(f"{console.ui}/namespaces/default/workflows")
    await page.get_by_role("button", name="Configure Codec Server").click()
    dialog = page.get_by_role("dialog", name="Codec Server")
    await dialog.get_by_role("radio", name="Use my browser setting").check()
    await dialog.get_by_role("textbox", name="Codec Server browser endpoint").fill(endpoint)
    await dialog.get_by_text("Include cross-origin credentials").click()
    await expect(
        dialog.get_by_role("switch", name="Include cross-origin credentials")
    ).to_be_checked()
    await shot(page, f"{name}-codec-settings")
    await dialog.get_by_role("button", name="Apply").click()
    await expect(dialog).to_be_hidden()
