"""``dagflow serve`` and ``dagflow db upgrade``: the starter service and its database."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

import click
from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from starter.app import create_app
from starter.commands.engine import BAD_INPUT, UNREACHABLE, fail, temporal_options
from starter.migrations import upgrade
from starter.settings import ServiceSettings

log = logging.getLogger("dagflow.starter")


def service_settings(**flags: Any) -> ServiceSettings:
    """Settings from flags (those given), then DAGFLOW_* variables, then defaults."""
    given = {k: v for k, v in flags.items() if v is not None}
    if "address" in given:
        given["temporal_address"] = given.pop("address")
    try:
        return ServiceSettings(**given)
    except ValidationError as e:
        problems = [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
        fail(BAD_INPUT, "bad settings:\n  " + "\n  ".join(problems))


def database_option(fn: Any) -> Any:
    """``--database-url``."""
    return click.option(
        "--database-url",
        help="SQLAlchemy async URL, e.g. postgresql+asyncpg://user:pw@host/db "
        "[DAGFLOW_DATABASE_URL; default sqlite+aiosqlite:///.dagflow/dagflow.db].",
    )(fn)


async def migrate(settings: ServiceSettings) -> str | None:
    """Upgrade the database to the latest schema, or exit 2 (bad URL) or 3 (unreachable)."""
    shown = _shown(settings.database_url)
    try:
        return await upgrade(settings.database_url)
    except ArgumentError as e:
        fail(BAD_INPUT, f"bad database URL {shown}: {e}")
    except (SQLAlchemyError, OSError) as e:
        fail(UNREACHABLE, f"cannot migrate the database at {shown}: {e}")


@click.command("serve")
@click.option("--host", help="Interface to listen on [DAGFLOW_HOST; default 127.0.0.1].")
@click.option("--port", type=int, help="Port (0: any free one) [DAGFLOW_PORT; default 8080].")
@click.option(
    "--shutdown-grace",
    type=float,
    help="Seconds requests in flight get after SIGTERM [DAGFLOW_SHUTDOWN_GRACE; default 10].",
)
@database_option
@temporal_options
def serve_cmd(**flags: Any) -> None:
    """Run the starter service: migrate the database, then serve /v1 until SIGTERM or Ctrl-C.

    The service starts even when Temporal is down (/readyz answers 503 until it is up).
    Set DAGFLOW_INSTANCE_KEY to a secret to bootstrap instance administration.

    \b
    Example:
      DAGFLOW_INSTANCE_KEY=change-me dagflow serve --port 8080
      curl -H "Authorization: Bearer change-me" -d '{"id": "acme"}' \\
        -H "Content-Type: application/json" http://127.0.0.1:8080/v1/instance/tenants
    """
    settings = service_settings(**flags)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(settings))


async def serve(settings: ServiceSettings, stop: asyncio.Event | None = None) -> None:
    """Migrate, then serve until ``stop`` is set (by default: until SIGTERM or SIGINT).

    On stop, the service stops accepting connections and lets requests in flight finish
    within the shutdown grace (``DAGFLOW_SHUTDOWN_GRACE``).
    """
    revision = await migrate(settings)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT) if stop is None else ()
    stop = stop or asyncio.Event()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(
        create_app(settings), handle_signals=False, shutdown_timeout=settings.shutdown_grace
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as e:
            fail(BAD_INPUT, f"cannot listen on {settings.host}:{settings.port}: {e.strerror or e}")
        host, port = runner.addresses[0][:2]
        click.echo(
            f"dagflow starter serving on http://{host}:{port} "
            f"(database {_shown(settings.database_url)} at revision {revision}, "
            f"Temporal {settings.temporal_address})"
        )
        sys.stdout.flush()
        await stop.wait()
        log.info("shutting down: requests in flight get %ss", settings.shutdown_grace)
    finally:
        await runner.cleanup()
        for sig in signals:
            loop.remove_signal_handler(sig)


@click.group("db")
def db_group() -> None:
    """The starter's database: bring its schema to the latest version.

    \b
    Example:
      dagflow db upgrade        # SQLite under .dagflow/, or DAGFLOW_DATABASE_URL
    """


@db_group.command("upgrade")
@database_option
def db_upgrade_cmd(database_url: str | None) -> None:
    """Migrate the database to the latest schema (dagflow serve also does it on start-up).

    \b
    Example:
      dagflow db upgrade --database-url postgresql+asyncpg://dagflow@db.internal/dagflow
    """
    settings = service_settings(database_url=database_url)
    revision = asyncio.run(migrate(settings))
    click.echo(f"database {_shown(settings.database_url)} is at revision {revision}")


def _shown(url: str) -> str:
    """A database URL with its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


COMMANDS = [serve_cmd, db_group]
