"""Small in-process caches of the service's hot path (``POST /v1/commands``, ``POST /v1/runs``).

- :class:`VersionCache`: parsed definition versions by ``(definition row id, version)``. A
  version is never changed or deleted once stored (a change adds a version; definitions and
  tenants are never deleted), so an entry cannot go stale: the cache needs no invalidation and
  is correct across several service processes. What *is* mutable (the current version, whether
  the definition is active, bindings) is still read from the database on every request.
- :class:`KeyCache`: who an API key stands for, by the key's sha256, for at most
  ``DAGFLOW_KEY_CACHE_SECONDS``. A revocation through this process empties it once the
  revocation has committed, so it takes effect at once here; another service process of the
  same database keeps accepting the key for at most that many seconds. 0 turns it off.

Each application has its own caches (one per database), so tests that run several services in
one process never share entries.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from starter.auth import Principal
from workflows.definition import Definition

VERSIONS_KEPT = 1024
"""Parsed versions kept (least recently used dropped first)."""
KEYS_KEPT = 10_000
"""API keys kept (the oldest entry dropped first)."""


class VersionCache:
    """Parsed, runnable definition versions by ``(definition id, version)`` (LRU). Safe to use
    from the event loop and the database runner's thread at once."""

    def __init__(self, size: int = VERSIONS_KEPT) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[int, int], Definition] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, definition_id: int, version: int) -> Definition | None:
        """The parsed version, if it is kept."""
        key = (definition_id, version)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, definition_id: int, version: int, definition: Definition) -> None:
        """Keep a parsed version."""
        with self._lock:
            self._entries[(definition_id, version)] = definition
            self._entries.move_to_end((definition_id, version))
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class KeyCache:
    """Principals by the sha256 of their key, each kept for ``ttl`` seconds.

    A lookup that started before an invalidation never stores its (possibly stale) answer:
    :meth:`generation` is read before the database is, and :meth:`put` drops the answer when an
    invalidation happened in between.
    """

    def __init__(self, ttl: float, size: int = KEYS_KEPT) -> None:
        self.ttl = ttl
        self._size = size
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._generation = 0

    def get(self, digest: str) -> Principal | None:
        """The principal of a key looked up less than ``ttl`` seconds ago."""
        found = self._entries.get(digest)
        if found is None:
            return None
        principal, expires = found
        if time.monotonic() >= expires:
            del self._entries[digest]
            return None
        return principal

    @property
    def generation(self) -> int:
        """Changes at every invalidation."""
        return self._generation

    def put(self, digest: str, principal: Principal, generation: int) -> None:
        """Keep a principal read from the database while :attr:`generation` was ``generation``."""
        if self.ttl <= 0 or generation != self._generation:
            return
        if len(self._entries) >= self._size:
            del self._entries[next(iter(self._entries))]
        self._entries[digest] = (principal, time.monotonic() + self.ttl)

    def invalidate(self) -> None:
        """Forget every key (a key was revoked)."""
        self._entries.clear()
        self._generation += 1

    def invalidate_after_commit(self, session: AsyncSession) -> None:
        """Forget every key once ``session``'s transaction commits: forgetting before would
        let a concurrent lookup read the key as still valid and keep it."""

        def forget(*_: Any) -> None:
            self.invalidate()

        event.listen(session.sync_session, "after_commit", forget, once=True)
