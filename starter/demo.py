"""A small shop API on 127.0.0.1 that the examples call: orders, charges, stock reservations.

``dagflow dev`` starts it so the examples run end to end with nothing else installed; the
tests start it the same way.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

ORDERS: dict[str, dict[str, Any]] = {
    "A-1001": {
        "id": "A-1001",
        "customer": "ada@example.com",
        "total": 4200,
        "items": [{"sku": "kettle", "qty": 1}, {"sku": "mug", "qty": 2}, {"sku": "tea", "qty": 3}],
    },
    "A-1002": {"id": "A-1002", "customer": "bob@example.com", "total": 0, "items": []},
}


@dataclass
class ShopState:
    """What the shop has seen, so tests can look."""

    charges: list[dict[str, Any]] = field(default_factory=list)
    reservations: list[str] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


STATE = web.AppKey("state", ShopState)


async def get_order(request: web.Request) -> web.Response:
    order = ORDERS.get(request.match_info["order_id"])
    if order is None:
        return web.json_response({"error": "no such order"}, status=404)
    return web.json_response(order)


async def charge(request: web.Request) -> web.Response:
    body = await request.json()
    state = request.app[STATE]
    record = {"charge_id": f"ch_{next(state.ids)}", "amount": body.get("amount")}
    state.charges.append(record)
    return web.json_response(record, status=201)


async def reserve(request: web.Request) -> web.Response:
    sku = request.match_info["sku"]
    request.app[STATE].reservations.append(sku)
    return web.json_response({"sku": sku, "reserved": True})


def create_app() -> web.Application:
    """The shop as an aiohttp application."""
    app = web.Application()
    app[STATE] = ShopState()
    app.router.add_get("/orders/{order_id}", get_order)
    app.router.add_post("/charge", charge)
    app.router.add_post("/reserve/{sku}", reserve)
    return app


async def start(host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve the shop; return the runner (``await runner.cleanup()`` to stop) and its URL."""
    runner = web.AppRunner(create_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, f"http://{host}:{bound}"
