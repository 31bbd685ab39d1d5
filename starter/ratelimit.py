"""Per-tenant rate limits: a token bucket for each tenant, kept in memory.

Each ``dagflow serve`` process keeps its own buckets, so behind a load balancer a tenant's
effective limit is the per-process limit times the number of processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets: ``rate`` tokens per second, holding at most ``burst``.

    Args:
        rate: Requests per second a tenant may make on average.
        burst: Requests a tenant may make at once after being idle.
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float | None:
        """Spend one token of ``key``'s bucket.

        Returns:
            None when the request may go ahead, else the seconds until a token is free.
        """
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return (1 - bucket.tokens) / self.rate
