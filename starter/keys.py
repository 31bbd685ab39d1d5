"""Typed keys of the application and of requests: everything handlers share, in one place."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from starter.auth import Principal
from starter.cache import KeyCache, VersionCache
from starter.db.runner import DbRunner
from starter.ratelimit import RateLimiter
from starter.settings import ServiceSettings
from starter.temporal import TemporalLink

if TYPE_CHECKING:
    from starter.alerts import Notifier
    from starter.routes.table import Route

SETTINGS = web.AppKey("settings", ServiceSettings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS: web.AppKey[async_sessionmaker[AsyncSession]] = web.AppKey("sessions")
TEMPORAL = web.AppKey("temporal", TemporalLink)
LIMITER = web.AppKey("limiter", RateLimiter)
ROUTES: web.AppKey[dict[str, Route[Any, Any]]] = web.AppKey("routes")
"""Every served route by its name (the aiohttp route name)."""
KINDS: web.AppKey[frozenset[str]] = web.AppKey("kinds")
"""The step kinds definitions may use: the built-in ones and the installed plugins'."""
NOTIFIER: web.AppKey[Notifier] = web.AppKey("notifier")
"""The alert notifier, when ``DAGFLOW_ALERTS`` runs it in this process."""
VERSIONS = web.AppKey("versions", VersionCache)
"""Parsed definition versions (immutable), by definition id and version."""
KEY_CACHE = web.AppKey("key_cache", KeyCache)
"""Principals of API keys seen in the last ``DAGFLOW_KEY_CACHE_SECONDS``."""
KEY_LOOKUPS: web.AppKey[dict[str, asyncio.Future[Principal]]] = web.AppKey("key_lookups")
"""Key lookups in flight, by the key's sha256, shared by the requests that wait for them."""
DB_RUNNER = web.AppKey("db_runner", DbRunner)
"""Runs the hot path's units of database work (:mod:`starter.db.runner`)."""
BOOTSTRAP_KEY_HASH: web.AppKey[str | None] = web.AppKey("bootstrap_key_hash")
"""The sha256 of the instance key from the settings, if one is set."""

PRINCIPAL = web.RequestKey("principal", Principal)
"""Who the request comes from (set for every authenticated route)."""
