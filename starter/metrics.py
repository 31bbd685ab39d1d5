"""The starter's Prometheus metrics: requests by route template and status, their latency, and
command outcomes. Served at ``GET /metrics`` (:mod:`starter.routes.metrics`).

Each application has a registry of its own (``prometheus_client``'s ``CollectorRegistry``), so
several apps in one process (the tests) never share counters. The starter does not use the
Temporal runtime's Prometheus exporter: that one serves on a port of its own, and the starter's
metrics belong on its service port next to ``/readyz``.
"""

from __future__ import annotations

import time

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
        self.commands = Counter(
            "dagflow_commands",
            "Commands by outcome (created, repeated, refused) and reason of a refusal.",
            ["outcome", "reason"],
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
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
            request.app[METRICS].observe(method, route, status, time.monotonic() - started)
