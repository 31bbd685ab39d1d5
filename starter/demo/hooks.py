"""The demo webhook hub: a subscription list and subscribers' inboxes that check signatures.

``GET /subscriptions?event=E`` lists the subscribers of an event type with their inbox URLs.
``POST /inbox/{name}`` is a subscriber's endpoint: it checks ``X-Dagflow-Signature`` with
:func:`activities.webhook.verify_signature` (401 when it does not match) and keeps one
delivery per ``Idempotency-Key``. The ``mailer`` subscriber is flaky: it answers 503 to the
first attempt of every delivery, so its deliveries show a retry with the same key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from activities.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)

SUBSCRIBERS: dict[str, list[str]] = {
    "crm": ["order.paid"],
    "analytics": ["order.paid", "orders.loaded"],
    "mailer": ["order.paid"],
}
"""Subscriber -> the event types it takes."""
FLAKY = frozenset({"mailer"})


@dataclass
class HooksState:
    """The signing secret, and what the inboxes received."""

    secret: str
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    """Verified deliveries, one per idempotency key, in arrival order."""
    attempts: dict[str, int] = field(default_factory=dict)
    """Verified requests per idempotency key (retries included)."""
    rejected: int = 0
    """Requests whose signature did not verify."""

    def verified(self, subscriber: str | None = None) -> list[dict[str, Any]]:
        """The deliveries, or one subscriber's."""
        return [d for d in self.deliveries if subscriber in (None, d["subscriber"])]


STATE = web.AppKey("hooks", HooksState)
PREFIX = web.AppKey("hooks_prefix", str)


async def subscriptions(request: web.Request) -> web.Response:
    """``GET /subscriptions?event=E``: ``{"subscriptions": [{name, url}]}``."""
    event = request.query.get("event")
    base = f"{request.url.origin()}{request.app[PREFIX]}"
    found = [
        {"name": name, "url": f"{base}/inbox/{name}"}
        for name, events in SUBSCRIBERS.items()
        if event is None or event in events
    ]
    return web.json_response({"event": event, "subscriptions": found})


async def receive(request: web.Request) -> web.Response:
    """``POST /inbox/{name}``: verify, drop repeats, record."""
    name = request.match_info["name"]
    if name not in SUBSCRIBERS:
        return web.json_response({"error": "no such subscriber"}, status=404)
    state = request.app[STATE]
    raw = await request.read()
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not verify_signature(state.secret, timestamp, raw, signature):
        state.rejected += 1
        return web.json_response({"error": "bad signature"}, status=401)
    key = request.headers.get(IDEMPOTENCY_HEADER, "")
    state.attempts[key] = state.attempts.get(key, 0) + 1
    if name in FLAKY and state.attempts[key] == 1:
        return web.json_response({"error": "try again"}, status=503)
    if any(d["key"] == key for d in state.deliveries):
        return web.json_response({"duplicate": True}, status=200)
    state.deliveries.append(
        {
            "subscriber": name,
            "event": request.headers.get("X-Dagflow-Event"),
            "key": key,
            "payload": await request.json(),
        }
    )
    return web.json_response({"accepted": True}, status=202)


async def inbox(request: web.Request) -> web.Response:
    """``GET /inbox/{name}``: the subscriber's verified deliveries."""
    return web.json_response(request.app[STATE].verified(request.match_info["name"]))


def create_app(state: HooksState, prefix: str = "") -> web.Application:
    """The hub as an aiohttp application mounted at ``prefix`` (for the inbox URLs it lists)."""
    app = web.Application()
    app[STATE] = state
    app[PREFIX] = prefix
    app.router.add_get("/subscriptions", subscriptions)
    app.router.add_post("/inbox/{name}", receive)
    app.router.add_get("/inbox/{name}", inbox)
    return app
