"""The demo ETL endpoints: a source of raw order rows and a sink (a warehouse) that loads
batches.

``GET /source/orders?day=YYYY-MM-DD`` answers the day's rows, amounts in integer cents. The
day ``2026-11-23`` holds a broken row, so a validation step has something to catch.
``POST /sink/batches {batch, rows}`` loads a batch; loading the same batch id again replaces
it, so a retried load is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

GOOD_DAY = [
    {"id": "A-1001", "amount_cents": 4200, "currency": "EUR", "status": "paid",
     "email": "ada@example.com"},
    {"id": "A-1002", "amount_cents": 38900, "currency": "EUR", "status": "paid",
     "email": "bob@example.com"},
    {"id": "A-1003", "amount_cents": 5600, "currency": "EUR", "status": "cancelled",
     "email": "cy@example.com"},
    {"id": "A-1004", "amount_cents": 1250, "currency": "USD", "status": "paid",
     "email": "dee@example.com"},
]  # fmt: skip
BAD_DAY = [
    {"id": "A-2001", "amount_cents": 990, "currency": "EUR", "status": "paid",
     "email": "eve@example.com"},
    {"id": "A-2002", "amount_cents": "12.50", "currency": "EUR", "status": "paid"},
]  # fmt: skip
BAD_DATE = "2026-11-23"


@dataclass
class EtlState:
    """What the sink holds: batch id -> rows."""

    batches: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    loads: int = 0
    """Load requests, repeats included."""


STATE = web.AppKey("etl", EtlState)


async def source(request: web.Request) -> web.Response:
    """``GET /source/orders?day=``."""
    day = request.query.get("day", "")
    rows = BAD_DAY if day == BAD_DATE else GOOD_DAY
    return web.json_response({"day": day, "rows": rows})


async def load(request: web.Request) -> web.Response:
    """``POST /sink/batches {batch, rows}``: ``{batch, loaded}``."""
    body = await request.json()
    batch, rows = body.get("batch"), body.get("rows")
    if not isinstance(batch, str) or not isinstance(rows, list):
        return web.json_response({"error": "need a batch id and a list of rows"}, status=422)
    state = request.app[STATE]
    state.loads += 1
    state.batches[batch] = rows
    return web.json_response({"batch": batch, "loaded": len(rows)}, status=201)


async def get_batch(request: web.Request) -> web.Response:
    """``GET /sink/batches/{batch}``."""
    rows = request.app[STATE].batches.get(request.match_info["batch"])
    if rows is None:
        return web.json_response({"error": "no such batch"}, status=404)
    return web.json_response({"batch": request.match_info["batch"], "rows": rows})


def create_app(state: EtlState | None = None) -> web.Application:
    """The source and the sink as an aiohttp application."""
    app = web.Application()
    app[STATE] = state or EtlState()
    app.router.add_get("/source/orders", source)
    app.router.add_post("/sink/batches", load)
    app.router.add_get("/sink/batches/{batch}", get_batch)
    return app
