"""Alerts: tenants' rules deliver signed webhooks to a real receiver on 127.0.0.1, from real
runs on a worker, once per event, with retries (each test on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from temporalio.client import Client

from activities.webhook import (
    EVENT_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)
from starter.alerts import LEASE
from starter.api.alerts import AlertDelivery
from starter.client import DagflowClient
from starter.db.engine import create_engine, session_factory
from starter.db.models import AlertDelivery as AlertDeliveryRow
from starter.errors import Invalid, NotFound
from tests.engine import dag_worker
from tests.starter import Databases, Starter, running, service_settings
from tests.steps import Probe
from workflows.definition import Definition
from workflows.search_attributes import run_attributes
from workflows.types import WORKFLOW_TYPE, DagRunInput

INTERVAL = 0.3
SECRETS = {"a": "secret-of-a", "b": "secret-of-b"}


@dataclass
class Received:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A local HTTP server that records alerts and answers with ``statuses`` first, then 200."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(Received(dict(request.headers), await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@dataclass
class Alerting:
    """A starter whose notifier runs every :data:`INTERVAL`, two tenants and a worker."""

    service: Starter
    a: DagflowClient
    b: DagflowClient
    receiver: Receiver
    ids: dict[str, str]


@pytest.fixture
async def alerting(
    databases: Databases, temporal_address: str, client: Client, tmp_path: Path
) -> AsyncIterator[Alerting]:
    ids = {name: f"{name}-{uuid.uuid4().hex[:8]}" for name in SECRETS}
    secrets = tmp_path / "alert-secrets.yaml"
    secrets.write_text(yaml.safe_dump({ids[n]: {"alerts": v} for n, v in SECRETS.items()}))
    settings = service_settings(
        await databases.fresh(),
        temporal_address,
        task_queue=f"tq-{uuid.uuid4()}",
        alerts_interval=INTERVAL,
        alert_backoff=0.2,
        alert_secrets_file=str(secrets),
        allowed_networks=["127.0.0.0/8"],
    )
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    receiver.url = str(server.make_url("/hook"))
    try:
        async with (
            running(settings) as service,
            dag_worker(client, Probe().activities(), task_queue=settings.task_queue),
        ):
            a, b = await service.tenant(ids["a"]), await service.tenant(ids["b"])
            yield Alerting(service, a, b, receiver, ids)
    finally:
        await server.close()


def flaky(fail_times: int, **extra: Any) -> dict[str, Any]:
    return {
        "uses": "flaky",
        "with": {"value": "ok", "fail_times": fail_times},
        "retry": {"max_attempts": 1},
        **extra,
    }


FAILING = {"name": "boom", "steps": {"charge": flaky(10_000)}}
PASSING = {"name": "fine", "steps": {"charge": flaky(0)}}
PARKING = {"name": "parks", "steps": {"charge": flaky(10_000, on_error="manual")}}


async def until(check: Any, within: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        found = await check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def delivered(tenant: DagflowClient, count: int = 1) -> list[AlertDelivery]:
    """The tenant's deliveries once ``count`` of them are no longer pending."""

    async def check() -> list[AlertDelivery] | None:
        items = (await tenant.alerts.deliveries()).items
        done = [d for d in items if d.status != "pending"]
        return items if len(done) >= count else None

    result: list[AlertDelivery] = await until(check)
    return result


async def closed(tenant: DagflowClient, run: str, status: str) -> None:
    async def check() -> bool:
        return (await tenant.runs.get(run)).status == status

    await until(check)


async def test_a_failed_run_alerts_once_signed_with_the_tenants_secret(
    alerting: Alerting,
) -> None:
    a, b, receiver = alerting.a, alerting.b, alerting.receiver
    await a.definitions.create(FAILING)
    await a.definitions.create(PASSING)
    rule = await a.alerts.create("run_failed", receiver.url, definition="boom")
    other = await a.alerts.create("run_failed", receiver.url, definition="fine")
    assert (rule.kind, rule.secret, rule.enabled, rule.definition) == (
        "run_failed",
        "alerts",
        True,
        "boom",
    )

    ok = await a.runs.start("fine")
    run = await a.runs.start("boom")
    await closed(a, run.id, "failed")
    await closed(a, ok.id, "completed")
    [delivery] = await delivered(a)
    await asyncio.sleep(5 * INTERVAL)  # later evaluations see the same failed run again
    assert len(receiver.requests) == 1
    assert [d.id for d in (await a.alerts.deliveries()).items] == [delivery.id]

    [request] = receiver.requests
    payload = request.json
    assert payload["alert"] == "run_failed" and payload["rule"] == rule.id
    assert (payload["tenant"], payload["run"], payload["definition"]) == (
        alerting.ids["a"],
        run.id,
        "boom",
    )
    assert payload["status"] == "failed" and "flaky failure" in payload["error"]
    assert payload["at"]
    stamp, signature = request.headers[TIMESTAMP_HEADER], request.headers[SIGNATURE_HEADER]
    assert verify_signature(SECRETS["a"], stamp, request.body, signature)
    assert not verify_signature(SECRETS["b"], stamp, request.body, signature)
    assert request.headers[EVENT_HEADER] == "run_failed"
    assert request.headers[IDEMPOTENCY_HEADER] == delivery.idempotency_key
    assert (delivery.status, delivery.attempts, delivery.last_status) == ("delivered", 1, 200)
    assert delivery.rule == rule.id and delivery.payload == payload
    assert (await a.alerts.deliveries(rule=other.id)).items == []

    # tenant B sees none of A's rules or deliveries
    assert (await b.alerts.list()).items == []
    assert (await b.alerts.deliveries()).items == []
    for call in (
        b.alerts.get(rule.id),
        b.alerts.update(rule.id, enabled=False),
        b.alerts.delete(rule.id),
        b.alerts.deliveries(rule=rule.id),
    ):
        with pytest.raises(NotFound):
            await call
    assert (await a.alerts.get(rule.id)).enabled


async def test_a_parked_step_alerts_with_the_step(alerting: Alerting, client: Client) -> None:
    a, receiver = alerting.a, alerting.receiver
    await a.definitions.create(PARKING)
    rule = await a.alerts.create("step_parked", receiver.url)
    # a parked run of the tenant on a task queue no worker polls: its progress query cannot
    # be answered, and it must not hold up the alert of the other run
    orphan = await client.start_workflow(
        WORKFLOW_TYPE,
        DagRunInput(
            definition=Definition.model_validate(PARKING), tenant=alerting.ids["a"], version=1
        ),
        id=f"{alerting.ids['a']}/parks/orphan",
        task_queue=f"nobody-{uuid.uuid4()}",
        search_attributes=run_attributes(alerting.ids["a"], "parks", 1, status="NeedsAttention"),
    )
    run = await a.runs.start("parks")
    await closed(a, run.id, "needs_attention")
    [delivery] = await delivered(a)
    await asyncio.sleep(3 * INTERVAL)
    assert len(receiver.requests) == 1
    payload = receiver.requests[0].json
    assert (payload["alert"], payload["rule"], payload["run"], payload["step"]) == (
        "step_parked",
        rule.id,
        run.id,
        "charge",
    )
    assert payload["status"] == "needs_attention" and "flaky failure" in payload["error"]
    assert delivery.status == "delivered"
    await a.runs.fail(run.id, "done testing")
    await orphan.terminate()


async def test_failure_rate_fires_at_the_threshold_once_enough_runs_closed(
    alerting: Alerting,
) -> None:
    a, receiver = alerting.a, alerting.receiver
    await a.definitions.create(FAILING)
    await a.definitions.create(PASSING)
    rule = await a.alerts.create(
        "failure_rate", receiver.url, threshold=60, window="10m", min_runs=3
    )
    assert (rule.threshold, rule.window, rule.min_runs) == (60, "10m", 3)
    for _ in range(2):
        run = await a.runs.start("boom")
        await closed(a, run.id, "failed")

    async def both_listed() -> bool:
        return len([r async for r in a.runs.iterate(status="failed")]) == 2

    await until(both_listed)
    await asyncio.sleep(4 * INTERVAL)  # 2 of 2 failed, but fewer than 3 runs closed
    assert receiver.requests == []

    run = await a.runs.start("fine")
    await closed(a, run.id, "completed")
    [delivery] = await delivered(a)
    await asyncio.sleep(3 * INTERVAL)
    assert len(receiver.requests) == 1
    payload = receiver.requests[0].json
    assert (payload["alert"], payload["failed"], payload["closed"]) == ("failure_rate", 2, 3)
    assert payload["rate"] == pytest.approx(66.67) and payload["definition"] is None
    assert delivery.status == "delivered"


async def test_a_receiver_answering_503_twice_gets_one_key_three_times(
    alerting: Alerting,
) -> None:
    a, receiver = alerting.a, alerting.receiver
    receiver.statuses = [503, 503]
    await a.definitions.create(FAILING)
    await a.alerts.create("run_failed", receiver.url)
    run = await a.runs.start("boom")
    await closed(a, run.id, "failed")
    [delivery] = await delivered(a)
    keys = [r.headers[IDEMPOTENCY_HEADER] for r in receiver.requests]
    assert keys == [delivery.idempotency_key] * 3
    assert (delivery.status, delivery.attempts, delivery.last_status) == ("delivered", 3, 200)
    for request in receiver.requests:  # every attempt is signed afresh
        headers = request.headers
        assert verify_signature(
            SECRETS["a"], headers[TIMESTAMP_HEADER], request.body, headers[SIGNATURE_HEADER]
        )


async def test_a_delivery_whose_sender_stopped_is_taken_over_after_its_lease(
    alerting: Alerting,
) -> None:
    a, receiver = alerting.a, alerting.receiver
    rule = await a.alerts.create("run_failed", receiver.url)
    now = datetime.now(UTC)
    payload = {"alert": "run_failed", "rule": rule.id, "tenant": alerting.ids["a"]}
    engine = create_engine(alerting.service.database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            for event, lease in (("stale", now - timedelta(seconds=1)), ("held", now + LEASE)):
                session.add(
                    AlertDeliveryRow(
                        rule_id=rule.id,
                        tenant_id=alerting.ids["a"],
                        event_key=event,
                        idempotency_key=f"key-{event}",
                        payload={**payload, "event": event},
                        status="pending",
                        attempts=1,
                        last_status=503,
                        lease_until=lease,
                    )
                )
    finally:
        await engine.dispose()

    [stale] = [d for d in await delivered(a) if d.event == "stale"]
    assert (stale.status, stale.attempts, stale.last_status) == ("delivered", 2, 200)
    await asyncio.sleep(3 * INTERVAL)  # the other one is still leased to its (gone) sender
    assert [r.headers[IDEMPOTENCY_HEADER] for r in receiver.requests] == ["key-stale"]
    assert receiver.requests[0].json["event"] == "stale"
    [held] = [d for d in (await a.alerts.deliveries()).items if d.event == "held"]
    assert (held.status, held.attempts) == ("pending", 1)
    await a.alerts.delete(rule.id)  # its deliveries go with it
    assert (await a.alerts.deliveries()).items == []


async def test_bad_rules_answer_422_naming_the_field(alerting: Alerting) -> None:
    a = alerting.a
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "nope", "url": "https://x.example/h"}, "kind"),
        ({"kind": "run_failed", "url": "ftp://x.example/h"}, "url"),
        ({"kind": "run_failed", "url": "https://x.example/h", "threshold": 5}, "threshold"),
        ({"kind": "failure_rate", "url": "https://x.example/h", "window": "1h"}, "threshold"),
        (
            {
                "kind": "failure_rate",
                "url": "https://x.example/h",
                "threshold": 5,
                "window": "3 weeks",
            },
            "window",
        ),
        (
            {
                "kind": "failure_rate",
                "url": "https://x.example/h",
                "threshold": 101,
                "window": "1h",
            },
            "threshold",
        ),
        ({"kind": "run_failed", "url": "https://x.example/h", "secret": "other"}, "secret"),
        (
            {"kind": "run_failed", "url": "https://x.example/h", "definition": "Bad Name"},
            "definition",
        ),
    ]
    for body, path in cases:
        with pytest.raises(Invalid) as error:
            await a.alerts.create(**body)
        assert [e.path for e in error.value.problem.errors or []] == [path], body
    rule = await a.alerts.create("run_failed", "https://x.example/h")
    with pytest.raises(Invalid) as null:
        await a.alerts.update(rule.id, url="not a url")
    assert [e.path for e in null.value.problem.errors or []] == ["url"]
    changed = await a.alerts.update(rule.id, enabled=False)
    assert not changed.enabled
    assert [r.id for r in (await a.alerts.list()).items] == [rule.id]
    await a.alerts.delete(rule.id)
    with pytest.raises(NotFound):
        await a.alerts.get(rule.id)


async def test_alerts_to_private_addresses_are_refused_unless_allowed(
    databases: Databases, temporal_address: str, client: Client, tmp_path: Path
) -> None:
    secrets = tmp_path / "alert-secrets.yaml"
    secrets.write_text(yaml.safe_dump({"*": {"alerts": "s"}}))
    settings = service_settings(
        await databases.fresh(),
        temporal_address,
        task_queue=f"tq-{uuid.uuid4()}",
        alerts_interval=INTERVAL,
        alert_secrets_file=str(secrets),
    )
    async with (
        running(settings) as service,
        dag_worker(client, Probe().activities(), task_queue=settings.task_queue),
    ):
        tenant = await service.tenant()
        await tenant.definitions.create(FAILING)
        await tenant.alerts.create("run_failed", "http://127.0.0.1:9/hook")
        await tenant.alerts.create("run_failed", "http://localhost:9/hook")  # by name
        run = await tenant.runs.start("boom")
        await closed(tenant, run.id, "failed")
        deliveries = await delivered(tenant, 2)
    assert len(deliveries) == 2
    for delivery in deliveries:  # refused at once, not retried
        assert (delivery.status, delivery.attempts, delivery.last_status) == ("failed", 1, None)
        assert "loopback" in (delivery.last_error or "")
