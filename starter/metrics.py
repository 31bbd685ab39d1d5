"""The starter's Prometheus metrics: requests by route template and status, their latency, the
time spent in each phase of a request, and command outcomes. Served at ``GET /metrics``
(:mod:`starter.routes.metrics`).

A phase (:func:`phase`) is a named part of a request's work, timed where it runs and observed
when the request ends: ``authenticate`` on every authenticated route, and the steps of ``POST
/v1/commands`` (``ledger_lookup``, ``bindings``, ``definitions``, ``temporal_start``,
``ledger_write``). They break a request's cost down without touching its answer.

Each application has a registry of its own (``prometheus_client``'s ``CollectorRegistry``), so
several apps in one process (the tests) never share counters. The starter does not use the
Temporal runtime's Prometheus exporter: that one serves on a port of its own, and the starter's
metrics belong on its service port next to ``/readyz``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

METRICS_PATH = "/metrics"
COMMANDS_ROUTE = ("POST", "/v1/commands")
UNMATCHED = "unmatched"
"""The route label of requests that match no route (unknown paths): raw paths never become
labels, so tenant ids and run keys stay out of the metrics."""
REFUSAL_REASONS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "no_binding",
    409: "cannot_run",
    413: "too_large",
    415: "bad_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}
"""Why ``POST /v1/commands`` refused, by the status of its answer (see docs/starter.md)."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
PHASE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class StarterMetrics:
    """The starter's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dagflow_http_requests",
            "Requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dagflow_http_request_duration_seconds",
            "Seconds from a request's arrival to its answer, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.phases = Histogram(
            "dagflow_http_request_phase_seconds",
            "Seconds spent in one phase of a request (authenticate, and the steps of POST "
            "/v1/commands), by method, route template and phase.",
            ["method", "route", "phase"],
            buckets=PHASE_BUCKETS,
            registry=self.registry,
        )
        self.commands = Counter(
            "dagflow_commands",
            "Commands by outcome (created, repeated, refused) and reason of a refusal.",
            ["outcome", "reason"],
            registry=self.registry,
        )

    def observe(
        self, method: str, route: str, status: int, seconds: float, phases: dict[str, float]
    ) -> None:
        """Count one answered request and the phases it went through."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
        for name, spent in phases.items():
            self.phases.labels(method, route, name).observe(spent)
        if (method, route) == COMMANDS_ROUTE:
            if status == 201:
                self.commands.labels("created", "").inc()
            elif status == 200:
                self.commands.labels("repeated", "").inc()
            elif status >= 400:
                self.commands.labels("refused", REFUSAL_REASONS.get(status, "error")).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", StarterMetrics)
PHASES: web.RequestKey[dict[str, float]] = web.RequestKey("phases")
"""Seconds spent so far in each phase of the request."""


def phases(request: web.Request) -> dict[str, float]:
    """The phases of the request so far (seconds by name), to add to."""
    found = request.get(PHASES)
    if found is None:
        found = request[PHASES] = {}
    return found


@contextmanager
def timed(spent: dict[str, float], name: str) -> Iterator[None]:
    """Add the seconds the block takes to ``spent[name]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        spent[name] = spent.get(name, 0.0) + time.perf_counter() - started


def phase(request: web.Request, name: str) -> AbstractContextManager[None]:
    """Time the block as the phase ``name`` of the request (added up if it runs twice)."""
    return timed(phases(request), name)


@web.middleware
async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request by its route template (outermost middleware)."""
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as error:
        status = error.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else UNMATCHED
        method = request.method if request.method in METHODS else "OTHER"
        if route != METRICS_PATH:
            spent = time.monotonic() - started
            request.app[METRICS].observe(method, route, status, spent, request.get(PHASES, {}))
