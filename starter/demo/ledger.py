"""The demo ledger: it starts in an outage and answers 503 until it is told to recover.

``POST /entries {id, day, lines}`` books a journal entry (the same id again answers the entry
already booked). ``POST /recover`` ends the outage and ``POST /outage`` starts one, so the
manual-recovery example can park a step, and an operator can fix the cause and retry it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class LedgerState:
    """Whether the ledger is down, and its entries by id."""

    down: bool = True
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: int = 0
    """Requests answered 503 during an outage."""


STATE = web.AppKey("ledger", LedgerState)


async def book(request: web.Request) -> web.Response:
    """``POST /entries {id, day, lines: [{account, amount}]}``."""
    state = request.app[STATE]
    if state.down:
        state.refused += 1
        return web.json_response({"error": "the ledger is down for maintenance"}, status=503)
    body = await request.json()
    entry_id = body.get("id")
    if entry_id in state.entries:
        return web.json_response(state.entries[entry_id], status=200)
    lines = body.get("lines") or []
    entry = {
        "id": entry_id,
        "day": body.get("day"),
        "lines": lines,
        "total": sum(line.get("amount", 0) for line in lines),
        "status": "booked",
    }
    state.entries[entry_id] = entry
    return web.json_response(entry, status=201)


async def get_entry(request: web.Request) -> web.Response:
    """``GET /entries/{entry_id}``."""
    entry = request.app[STATE].entries.get(request.match_info["entry_id"])
    if entry is None:
        return web.json_response({"error": "no such entry"}, status=404)
    return web.json_response(entry)


async def recover(request: web.Request) -> web.Response:
    """``POST /recover``: the outage ends."""
    request.app[STATE].down = False
    return web.json_response({"down": False})


async def outage(request: web.Request) -> web.Response:
    """``POST /outage``: an outage starts."""
    request.app[STATE].down = True
    return web.json_response({"down": True})


def create_app(state: LedgerState | None = None) -> web.Application:
    """The ledger as an aiohttp application."""
    app = web.Application()
    app[STATE] = state or LedgerState()
    app.router.add_post("/entries", book)
    app.router.add_get("/entries/{entry_id}", get_entry)
    app.router.add_post("/recover", recover)
    app.router.add_post("/outage", outage)
    return app
