"""Liveness, readiness and the OpenAPI document."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from pydantic import RootModel
from sqlalchemy.ext.asyncio import AsyncEngine

from starter import keys
from starter.api.health import Health
from starter.db.engine import ping
from starter.openapi import openapi
from starter.routes.table import Call, Route, json_response

RETRY_AFTER = "5"


class OpenApiDocument(RootModel[dict[str, Any]]):
    """An OpenAPI 3.1 document."""


async def healthz(call: Call[None]) -> Health:
    """Liveness: the process is up (nothing else is checked)."""
    return Health(status="ok")


async def readyz(call: Call[None]) -> web.Response:
    """Readiness: the database answers SELECT 1 and Temporal answers; 503 otherwise."""
    app = call.request.app
    timeout = app[keys.SETTINGS].temporal_timeout
    database, temporal = await asyncio.gather(
        _database_ok(app[keys.ENGINE], within=timeout), app[keys.TEMPORAL].healthy()
    )
    health = Health(
        status="ok" if database and temporal else "unavailable",
        database="ok" if database else "unavailable",
        temporal="ok" if temporal else "unavailable",
    )
    if health.status == "ok":
        return json_response(health)
    return json_response(health, 503, **{"Retry-After": RETRY_AFTER})


async def openapi_document(call: Call[None]) -> OpenApiDocument:
    """The OpenAPI 3.1 document of this API."""
    return OpenApiDocument(openapi(list(call.request.app[keys.ROUTES].values())))


async def _database_ok(engine: AsyncEngine, *, within: float) -> bool:
    try:
        await asyncio.wait_for(ping(engine), within)
    except Exception:
        return False
    return True


ROUTES: list[Route[Any, Any]] = [
    Route("GET", "/healthz", healthz, Health, access="public", tag="health"),
    Route("GET", "/readyz", readyz, Health, access="public", tag="health"),
    Route("GET", "/v1/openapi.json", openapi_document, OpenApiDocument, access="public",
          tag="health"),
]  # fmt: skip
