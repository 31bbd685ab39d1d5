"""The starter service: :func:`create_app` builds the aiohttp application from settings."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from starter import keys
from starter.alerts import Notifier
from starter.auth import hash_key
from starter.cache import KeyCache, VersionCache
from starter.db.engine import create_engine, session_factory
from starter.db.runner import DbRunner
from starter.files import known_kinds
from starter.metrics import METRICS, StarterMetrics, measure
from starter.middleware import MIDDLEWARES
from starter.ratelimit import RateLimiter
from starter.routes import ROUTES
from starter.routes.table import Route, add_routes
from starter.settings import ServiceSettings
from starter.temporal import TemporalLink
from worker.client import connect


def create_app(
    settings: ServiceSettings, routes: list[Route[Any, Any]] | None = None
) -> web.Application:
    """The service as an aiohttp application; the database and Temporal open on start-up.

    The schema must already be migrated (``dagflow serve`` does it before serving).

    Args:
        settings: Where to find the database and Temporal, the keys and limits.
        routes: The route table (default: every route of the API).
    """
    app = web.Application(
        middlewares=[measure, *MIDDLEWARES], client_max_size=settings.max_body_bytes
    )
    app[METRICS] = StarterMetrics()
    app[keys.SETTINGS] = settings
    app[keys.LIMITER] = RateLimiter(settings.rate_limit, settings.rate_burst)
    app[keys.KINDS] = frozenset(known_kinds())
    app[keys.VERSIONS] = VersionCache()
    app[keys.KEY_CACHE] = KeyCache(settings.key_cache_seconds)
    app[keys.KEY_LOOKUPS] = {}
    bootstrap = settings.instance_key.get_secret_value() if settings.instance_key else ""
    app[keys.BOOTSTRAP_KEY_HASH] = hash_key(bootstrap) if bootstrap else None
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_temporal)
    if settings.alerts:
        app.cleanup_ctx.append(_alerts)
    add_routes(app, ROUTES if routes is None else routes)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine(app[keys.SETTINGS].database_url)
    app[keys.ENGINE] = engine
    app[keys.SESSIONS] = session_factory(engine)
    runner = app[keys.DB_RUNNER] = DbRunner(engine)
    yield
    await asyncio.get_running_loop().run_in_executor(None, runner.close)
    await engine.dispose()


async def _temporal(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    link = TemporalLink(
        settings.temporal_address,
        settings.namespace,
        timeout=settings.temporal_timeout,
        connector=functools.partial(connect, keyring=settings.keyring()),
    )
    app[keys.TEMPORAL] = link
    warm_up = asyncio.create_task(link.healthy())
    yield
    warm_up.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await warm_up


async def _alerts(app: web.Application) -> AsyncIterator[None]:
    """The alert notifier (:mod:`starter.alerts`), stopped before the database closes."""
    notifier = Notifier(app[keys.SETTINGS], app[keys.SESSIONS], app[keys.TEMPORAL])
    app[keys.NOTIFIER] = notifier
    loop = asyncio.create_task(notifier.run())
    yield
    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop
    await notifier.close()
