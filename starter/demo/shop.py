"""The demo shop: orders, charges, refunds, stock reservations and carrier quotes.

Amounts are integer cents. The shop keeps everything in memory, so every start is a fresh
shop; :class:`ShopState` is what tests look at.
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
        "currency": "EUR",
        "total": 4200,
        "items": [{"sku": "kettle", "qty": 1}, {"sku": "mug", "qty": 2}, {"sku": "tea", "qty": 3}],
    },
    "A-1002": {
        "id": "A-1002",
        "customer": "bob@example.com",
        "currency": "EUR",
        "total": 38900,
        "items": [{"sku": "espresso-machine", "qty": 1}, {"sku": "mug", "qty": 2}],
    },
    "A-1003": {
        "id": "A-1003",
        "customer": "cy@example.com",
        "currency": "EUR",
        "total": 5600,
        "items": [{"sku": "mug", "qty": 1}, {"sku": "teapot", "qty": 1}],
    },
}
"""A-1001 is a small order, A-1002 needs approval (100.00 or more), A-1003 asks for a teapot,
which is sold out."""

STOCK = {"kettle": 1000, "mug": 5000, "tea": 5000, "espresso-machine": 100, "teapot": 0}

CARRIERS: dict[str, tuple[int, int, int] | None] = {
    "parcelco": (450, 120, 3),
    "zoom": (1200, 200, 1),
    "slowpost": None,
}
"""Quote formula per carrier: (base cents, cents per kg, days); None is a carrier whose API is
down (it answers 503)."""


@dataclass
class ShopState:
    """What the shop has seen and holds."""

    charges: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    reservations: list[dict[str, Any]] = field(default_factory=list)
    stock: dict[str, int] = field(default_factory=lambda: dict(STOCK))
    quotes: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def next_id(self, prefix: str) -> str:
        """A new id such as ``ch_3``."""
        return f"{prefix}_{next(self._ids)}"


STATE = web.AppKey("shop", ShopState)


def _problem(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def get_order(request: web.Request) -> web.Response:
    """``GET /orders/{order_id}``."""
    order = ORDERS.get(request.match_info["order_id"])
    if order is None:
        return _problem(404, "no such order")
    return web.json_response(order)


async def create_charge(request: web.Request) -> web.Response:
    """``POST /charges {order, amount}``; a repeated ``Idempotency-Key`` answers the first
    charge again instead of charging twice."""
    body = await request.json()
    state = request.app[STATE]
    key = request.headers.get("Idempotency-Key")
    for charge in state.charges:
        if key and charge["idempotency_key"] == key:
            return web.json_response(charge, status=200)
    if not isinstance(body.get("amount"), int) or body["amount"] <= 0:
        return _problem(422, "amount must be a positive number of cents")
    charge = {
        "charge_id": state.next_id("ch"),
        "order": body.get("order"),
        "amount": body["amount"],
        "status": "captured",
        "idempotency_key": key,
    }
    state.charges.append(charge)
    return web.json_response(charge, status=201)


async def list_charges(request: web.Request) -> web.Response:
    """``GET /charges``."""
    return web.json_response(request.app[STATE].charges)


async def create_refund(request: web.Request) -> web.Response:
    """``POST /refunds {charge_id, reason}``: refund a charge and release its order's stock."""
    body = await request.json()
    state = request.app[STATE]
    charge = next((c for c in state.charges if c["charge_id"] == body.get("charge_id")), None)
    if charge is None:
        return _problem(404, "no such charge")
    done = next((r for r in state.refunds if r["charge_id"] == charge["charge_id"]), None)
    if done is not None:
        return web.json_response(done, status=200)
    released = []
    for reservation in state.reservations:
        if reservation["order"] == charge["order"] and reservation["status"] == "held":
            reservation["status"] = "released"
            state.stock[reservation["sku"]] += reservation["qty"]
            released.append(reservation["reservation_id"])
    charge["status"] = "refunded"
    refund = {
        "refund_id": state.next_id("re"),
        "charge_id": charge["charge_id"],
        "order": charge["order"],
        "amount": charge["amount"],
        "reason": body.get("reason"),
        "released": released,
        "status": "refunded",
    }
    state.refunds.append(refund)
    return web.json_response(refund, status=201)


async def list_refunds(request: web.Request) -> web.Response:
    """``GET /refunds``."""
    return web.json_response(request.app[STATE].refunds)


async def reserve(request: web.Request) -> web.Response:
    """``POST /stock/{sku}/reservations {order, qty}``; 409 when there is not enough stock."""
    sku = request.match_info["sku"]
    body = await request.json()
    state = request.app[STATE]
    if sku not in state.stock:
        return _problem(404, "no such product", sku=sku)
    qty = body.get("qty", 1)
    if not isinstance(qty, int) or qty < 1:
        return _problem(422, "qty must be a positive integer")
    if state.stock[sku] < qty:
        return _problem(409, f"{sku} is out of stock", sku=sku, available=state.stock[sku])
    state.stock[sku] -= qty
    reservation = {
        "reservation_id": state.next_id("rs"),
        "order": body.get("order"),
        "sku": sku,
        "qty": qty,
        "status": "held",
    }
    state.reservations.append(reservation)
    return web.json_response(reservation, status=201)


async def get_stock(request: web.Request) -> web.Response:
    """``GET /stock/{sku}``."""
    sku = request.match_info["sku"]
    stock = request.app[STATE].stock
    if sku not in stock:
        return _problem(404, "no such product", sku=sku)
    return web.json_response({"sku": sku, "available": stock[sku]})


async def quote(request: web.Request) -> web.Response:
    """``GET /carriers/{carrier}/quote?kg=&to=``: a shipping price in cents."""
    carrier = request.match_info["carrier"]
    if carrier not in CARRIERS:
        return _problem(404, "no such carrier")
    request.app[STATE].quotes.append(carrier)
    formula = CARRIERS[carrier]
    if formula is None:
        return _problem(503, f"{carrier}'s quoting API is unavailable")
    try:
        kg = float(request.query.get("kg", "1"))
    except ValueError:
        return _problem(422, "kg must be a number")
    base, per_kg, days = formula
    price = base + round(per_kg * kg)
    to = request.query.get("to", "")
    return web.json_response({"carrier": carrier, "price": price, "days": days, "to": to})


def create_app(state: ShopState | None = None) -> web.Application:
    """The shop as an aiohttp application."""
    app = web.Application()
    app[STATE] = state or ShopState()
    app.router.add_get("/orders/{order_id}", get_order)
    app.router.add_post("/charges", create_charge)
    app.router.add_get("/charges", list_charges)
    app.router.add_post("/refunds", create_refund)
    app.router.add_get("/refunds", list_refunds)
    app.router.add_post("/stock/{sku}/reservations", reserve)
    app.router.add_get("/stock/{sku}", get_stock)
    app.router.add_get("/carriers/{carrier}/quote", quote)
    return app
