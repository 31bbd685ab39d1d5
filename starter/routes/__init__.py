"""The route table: every operation of the API, in one list.

:func:`starter.app.create_app` registers these routes and ``/v1/openapi.json`` describes
exactly these, so what is served and what is documented cannot drift.
"""

from __future__ import annotations

from typing import Any

from starter.routes import alerts, codec, codec_session, commands, graph, health, instance, runs
from starter.routes import metrics as metrics_routes
from starter.routes.bindings import binding_routes
from starter.routes.definitions import definition_routes
from starter.routes.table import Call, Route

ROUTES: list[Route[Any, Any]] = [
    *health.ROUTES,
    *instance.ROUTES,
    *definition_routes("/v1/instance", "instance"),
    *definition_routes("/v1", "tenant"),
    *binding_routes("/v1/instance", "instance"),
    *binding_routes("/v1", "tenant"),
    *commands.ROUTES,
    *runs.ROUTES,
    *graph.ROUTES,
    *metrics_routes.ROUTES,
    *alerts.ROUTES,
    *codec.ROUTES,
    *codec_session.ROUTES,
]

__all__ = ["ROUTES", "Call", "Route"]
