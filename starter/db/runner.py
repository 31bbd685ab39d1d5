"""Short units of database work on the hot path (``POST /v1/commands``), as plain functions of a
synchronous :class:`~sqlalchemy.engine.Connection`, run with as few hops as the driver allows.

- PostgreSQL (asyncpg, natively async): the work runs on an async connection through
  :meth:`~sqlalchemy.ext.asyncio.AsyncConnection.run_sync`, each statement awaited in turn.
- A SQLite file: aiosqlite sends every cursor call (open, execute, fetch, close, commit) to a
  thread of its own and back, and those hops cost more than the queries. Here the whole unit
  runs on one thread of the runner's, on a synchronous connection: one hop per unit. The
  thread keeps one connection, so the process's hot-path writes take turns on it instead of
  waiting for each other in SQLite's busy handler. Other processes (another service, the
  migrations) still share the file through SQLite's locks and ``busy_timeout``.

A unit of work is a function of the connection, e.g. ``lambda c: c.execute(query).all()``; a
writing unit runs in a transaction that commits when it returns and rolls back when it raises.
Its exceptions reach the caller unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Connection, Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.ext.asyncio import AsyncEngine

from starter.db.engine import sqlite_pragmas

T = TypeVar("T")
Work = Callable[[Connection], T]


class DbRunner:
    """Runs units of work on the database of ``engine``.

    Args:
        engine: The service's async engine.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sync: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        url = engine.url
        file = url.database or ""
        if (
            url.get_backend_name() == "sqlite"
            and file not in ("", ":memory:")
            and not (file.startswith("file:") or "mode=memory" in str(url))
        ):  # a SQLite file (an in-memory database is one per connection)
            self._sync = create_sync_engine(url.set(drivername="sqlite+pysqlite"))
            event.listen(self._sync, "connect", sqlite_pragmas)
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="dagflow-sqlite")

    @property
    def threaded(self) -> bool:
        """Whether units run on the runner's own thread (a SQLite file)."""
        return self._thread is not None

    async def read(self, work: Work[T]) -> T:
        """Run ``work`` outside any transaction it needs to commit."""
        if self._thread is None:
            async with self._engine.connect() as connection:
                return await connection.run_sync(work)
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._read, work)

    async def write(self, work: Work[T]) -> T:
        """Run ``work`` in a transaction: committed when it returns, rolled back if it raises."""
        if self._thread is None:
            async with self._engine.begin() as connection:
                return await connection.run_sync(work)
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._write, work)

    def _read(self, work: Work[T]) -> T:
        assert self._sync is not None
        with self._sync.connect() as connection:
            return work(connection)

    def _write(self, work: Work[T]) -> T:
        assert self._sync is not None
        with self._sync.begin() as connection:
            return work(connection)

    def close(self) -> None:
        """Let the thread finish its units, then close the connection."""
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        if self._sync is not None:
            self._sync.dispose()
