"""``GET /metrics`` (Prometheus) and ``GET /v1/metrics/summary`` (runs per definition)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import RootModel
from temporalio.client import Client

from starter.api.metrics import DefinitionSummary, MetricsSummary, SummaryQuery
from starter.metrics import METRICS, METRICS_PATH
from starter.routes.runs import RPC_TIMEOUT, run_status, runs_query, temporal_client, timestamp
from starter.routes.table import Call, Route
from workflows.search_attributes import DAG_NAME
from workflows.types import RunStatus

PROMETHEUS_TEXT = "text/plain"
SUMMARY_PAGE = 1000
"""Runs per visibility page (Temporal's largest page)."""
SUMMARY_LIMIT = 10_000
"""Closed runs one summary reads at most."""
_CLOSED_FIELDS = {
    RunStatus.COMPLETED: "completed",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELLED: "cancelled",
    RunStatus.TIMED_OUT: "timed_out",
}


class PrometheusText(RootModel[str]):
    """Metrics in the Prometheus text exposition format 0.0.4 (text/plain): request counts and
    latencies by route template and status, and command outcomes (see docs/operating.md)."""


async def prometheus_metrics(call: Call[None]) -> web.Response:
    """The starter's metrics for Prometheus (text exposition format)."""
    body = call.request.app[METRICS].exposition()
    return web.Response(
        body=body,
        content_type=PROMETHEUS_TEXT,
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )


async def metrics_summary(call: Call[SummaryQuery]) -> MetricsSummary:
    """Runs per definition over a window: counts by outcome, success rate, p50/p95 duration."""
    since = datetime.now(UTC) - call.input.span()
    client = await temporal_client(call)
    tenant = call.principal.tenant
    rows: dict[str, DefinitionSummary] = defaultdict(lambda: DefinitionSummary(definition=""))
    durations: dict[str, list[float]] = defaultdict(list)
    base = runs_query(tenant)
    closed = (
        f"{base} AND CloseTime >= {timestamp(since)} "
        "AND ExecutionStatus != 'Running' AND ExecutionStatus != 'ContinuedAsNew'"
    )
    truncated = False
    seen = 0
    async for execution in _executions(client, closed):
        if seen >= SUMMARY_LIMIT:
            truncated = True
            break
        seen += 1
        name = _definition(execution)
        status = run_status(execution.status, execution.typed_search_attributes)
        field = _CLOSED_FIELDS.get(status)
        if field is None:
            continue
        row = rows[name]
        setattr(row, field, getattr(row, field) + 1)
        if execution.close_time is not None and execution.start_time is not None:
            durations[name].append((execution.close_time - execution.start_time).total_seconds())
    async for execution in _executions(client, f"{base} AND ExecutionStatus = 'Running'"):
        rows[_definition(execution)].open += 1
    definitions = []
    for name in sorted(rows):
        row = rows[name]
        row.definition = name
        ended = row.completed + row.failed + row.cancelled + row.timed_out
        if ended:
            row.success_rate = row.completed / ended
        times = sorted(durations[name])
        if times:
            row.p50_seconds = _percentile(times, 0.50)
            row.p95_seconds = _percentile(times, 0.95)
        definitions.append(row)
    return MetricsSummary(
        window=call.input.window, since=since, definitions=definitions, truncated=truncated
    )


def _executions(client: Client, query: str) -> Any:
    return client.list_workflows(query, page_size=SUMMARY_PAGE, rpc_timeout=RPC_TIMEOUT)


def _definition(execution: Any) -> str:
    name = execution.typed_search_attributes.get(DAG_NAME)
    if name:
        return str(name)
    parts = execution.id.split("/")
    return parts[1] if len(parts) == 3 else "?"


def _percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


SUMMARY_ERRORS = ((400, "the window is not a duration like 24h, or is over 90d"),)

ROUTES: list[Route[Any, Any]] = [
    Route("GET", METRICS_PATH, prometheus_metrics, PrometheusText, access="public",
          tag="health", media_types=(PROMETHEUS_TEXT,)),
    Route("GET", "/v1/metrics/summary", metrics_summary, MetricsSummary, SummaryQuery,
          tag="runs", errors=SUMMARY_ERRORS),
]  # fmt: skip
"""The metrics routes: Prometheus text for anyone who reaches the port, the summary per
tenant."""
