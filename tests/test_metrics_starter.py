"""The starter's metrics: ``GET /metrics`` counts requests by route template and command
outcomes, and ``GET /v1/metrics/summary`` sums a tenant's runs per definition from visibility."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from temporalio.client import Client

from starter.api.metrics import MetricsSummary
from starter.errors import BadRequest, Forbidden, Invalid, NotFound, Unauthorized
from tests.engine import dag_worker, eventually
from tests.metrics import scrape, value
from tests.starter import Starter

REQUESTS = "dagflow_http_requests_total"
COMMANDS = "dagflow_commands_total"


@pytest.fixture
async def worked(starter: Starter, client: Client) -> AsyncIterator[Starter]:
    """The service with a worker on its task queue, so the runs it starts run."""
    async with dag_worker(client, task_queue=starter.settings.task_queue):
        yield starter


def checks(name: str) -> dict[str, Any]:
    """Completes when ``input.v`` is a string, fails when it is not."""
    check = {"uses": "validate", "with": {"value": "${{ input.v }}", "schema": {"type": "string"}}}
    return {"name": name, "steps": {"check": check}}


def waits(name: str) -> dict[str, Any]:
    """Waits for an event that never comes (an open run)."""
    wait = {"uses": "wait", "with": {"event": "never", "timeout": "2m"}}
    return {"name": name, "steps": {"w": wait}}


async def test_requests_are_counted_by_route_template_and_status(starter: Starter) -> None:
    url = f"{starter.base_url}/metrics"
    tenant = await starter.tenant()
    before = await scrape(url)
    await tenant.runs.list()
    await tenant.runs.list()
    key = f"secret-key-{uuid.uuid4().hex[:6]}"
    with pytest.raises(NotFound):
        await tenant.runs.get(f"nothing/{key}")
    async with aiohttp.ClientSession() as http, http.get(f"{starter.base_url}/no/{key}") as a:
        assert a.status == 404
    after = await scrape(url)

    def moved(**labels: str) -> float:
        return value(after, REQUESTS, **labels) - value(before, REQUESTS, **labels)

    assert moved(method="GET", route="/v1/runs", status="200") == 2
    assert moved(method="GET", route="/v1/runs/{definition}/{key}", status="404") == 1
    assert moved(route="unmatched", status="404") == 1
    assert moved(route="/metrics") == 0, "scrapes are not counted"
    latency = "dagflow_http_request_duration_seconds_count"
    assert value(after, latency, route="/v1/runs") - value(before, latency, route="/v1/runs") == 2
    assert key not in after and tenant.api_key not in after
    answer = await starter.client(None).send("GET", "/metrics")
    assert b"# TYPE dagflow_http_requests_total counter" in answer


async def test_command_outcomes_are_counted(worked: Starter) -> None:
    url = f"{worked.base_url}/metrics"
    tenant = await worked.tenant()
    await tenant.definitions.create(checks("checked"))
    await tenant.bindings.create("order.created", "checked")
    before = await scrape(url)
    await tenant.commands.send("order.created", "c-1", {"v": "a"})
    await tenant.commands.send("order.created", "c-1", {"v": "a"})
    with pytest.raises(Invalid):
        await tenant.commands.send("order.created", "c-1", {"v": "other"})
    with pytest.raises(NotFound):
        await tenant.commands.send("order.unbound", "c-2", {})
    after = await scrape(url)

    def moved(**labels: str) -> float:
        return value(after, COMMANDS, **labels) - value(before, COMMANDS, **labels)

    assert moved(outcome="created") == 1
    assert moved(outcome="repeated") == 1
    assert moved(outcome="refused", reason="invalid") == 1
    assert moved(outcome="refused", reason="no_binding") == 1
    route = {"method": "POST", "route": "/v1/commands"}
    assert value(after, REQUESTS, **route, status="201") == 1
    assert value(after, REQUESTS, **route, status="200") == 1


async def test_the_summary_counts_runs_per_definition_for_the_tenant_only(
    worked: Starter,
) -> None:
    a = await worked.tenant()
    b = await worked.tenant()
    for name in ("alpha", "beta"):
        await a.definitions.create(checks(name))
    await a.definitions.create(waits("gamma"))
    for run in ({"v": "x"}, {"v": "y"}):
        await a.runs.start("alpha", run)
    await a.runs.start("beta", {"v": "x"})
    await a.runs.start("beta", {"v": 1})
    await a.runs.start("gamma")

    summary: dict[str, MetricsSummary] = {}

    async def counted() -> bool:
        summary["a"] = got = await a.metrics_summary("1h")
        rows = {d.definition: d for d in got.definitions}
        return (
            set(rows) == {"alpha", "beta", "gamma"}
            and (rows["alpha"].completed, rows["beta"].completed, rows["beta"].failed) == (2, 1, 1)
            and rows["gamma"].open == 1
        )

    await eventually(counted, within=20)
    rows = {d.definition: d for d in summary["a"].definitions}
    assert [d.definition for d in summary["a"].definitions] == ["alpha", "beta", "gamma"]
    assert rows["alpha"].success_rate == 1.0 and rows["beta"].success_rate == 0.5
    assert (rows["alpha"].failed, rows["alpha"].open, rows["beta"].open) == (0, 0, 0)
    for row in (rows["alpha"], rows["beta"]):
        assert row.p50_seconds is not None and row.p95_seconds is not None
        assert 0 <= row.p50_seconds <= row.p95_seconds < 60
    gamma = rows["gamma"]
    assert (gamma.completed, gamma.success_rate, gamma.p50_seconds) == (0, None, None)
    assert summary["a"].window == "1h" and not summary["a"].truncated

    other = await b.metrics_summary("1h")
    assert other.definitions == []


async def test_a_bad_window_answers_400(starter: Starter) -> None:
    tenant = await starter.tenant()
    for window in ("yesterday", "0s", "91d"):
        with pytest.raises(BadRequest) as raised:
            await tenant.metrics_summary(window)
        assert [e.path for e in raised.value.problem.errors or []] == ["query.window"]
    assert (await tenant.metrics_summary("7d")).window == "7d"


async def test_the_summary_needs_a_tenant_key(starter: Starter) -> None:
    with pytest.raises(Unauthorized):
        await starter.client(None).metrics_summary()
    with pytest.raises(Forbidden):
        await starter.instance().metrics_summary()
