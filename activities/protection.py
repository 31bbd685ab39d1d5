"""Protecting the services steps call: a circuit breaker and a rate limit per host.

The worker's one :class:`~activities.client.HttpClient` holds one :class:`HostProtection`, so
every ``http`` and ``webhook`` activity of the worker process shares its state. State is kept
per host, keyed by scheme, host and port (:func:`host_key`); the settings come from the step's
``with.circuit_breaker`` / ``with.rate_limit``, else from the worker's defaults
(``DAGFLOW_HTTP_CIRCUIT_BREAKER`` / ``DAGFLOW_HTTP_RATE_LIMIT``), and both are off unless one
of them turns them on.

Circuit breaker: closed → open after ``failures`` failed requests (5xx, 429, network errors,
timeouts; not other 4xx) within ``window``. While open, attempts fail at once with a retryable
``CircuitOpen`` error whose ``next_retry_delay`` is the time left until half-open, so Temporal's
retry does the waiting and nothing is sent. After ``open_for``, the first attempt is the probe:
its success closes the breaker, its failure opens it again for ``open_for``. Attempts that
arrive while the probe is in flight wait for its outcome (up to :data:`PROBE_WAIT`). The
thresholds applied are those of the step whose request failed.

Rate limit: a token bucket per host (``per_second``, ``burst``). An attempt takes a token; when
none is free it waits for the next one if that comes within ``max_wait`` (heartbeating), and
otherwise fails with a retryable ``RateLimited`` error whose ``next_retry_delay`` is when a
token frees. Tokens are reserved in arrival order, so requests sent in any span of ``t`` seconds
are at most ``burst + per_second * t``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Literal, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError
from yarl import URL

from activities import errors
from workflows.definition import CircuitBreaker, RateLimit

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

PROBE_WAIT = 10.0
"""Seconds an attempt waits for a half-open breaker's probe before failing with CircuitOpen."""
BUSY_RETRY = timedelta(seconds=1)
"""The retry delay of an attempt that gave up waiting for a probe."""
HEARTBEAT_EVERY = 1.0
"""Waits are slept in slices of this many seconds, heartbeating between them."""
MAX_FAILURES_KEPT = 10_000


def host_key(url: URL) -> str:
    """What breakers and buckets are kept by: ``scheme://host:port`` (the port always given)."""
    return f"{url.scheme}://{url.host}:{url.port}"


class BreakerState(StrEnum):
    """Where a circuit breaker is."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


Admission = Literal["go", "probe", "busy"]
"""``go``: send; ``probe``: send as the half-open probe; ``busy``: a probe is in flight."""


@dataclass
class Breaker:
    """One host's circuit breaker: a state machine over an injected clock (monotonic seconds)."""

    clock: Clock = time.monotonic
    failures: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_FAILURES_KEPT))
    open_until: float | None = None
    probing: bool = False
    _changed: asyncio.Event | None = field(default=None, repr=False)

    @property
    def state(self) -> BreakerState:
        """Closed, open, or half-open (``open_for`` has passed; a probe may be in flight)."""
        if self.open_until is None:
            return BreakerState.CLOSED
        if self.clock() < self.open_until:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def retry_in(self) -> timedelta:
        """Time until the breaker lets a probe through (zero unless open)."""
        if self.open_until is None:
            return timedelta(0)
        return timedelta(seconds=max(0.0, self.open_until - self.clock()))

    def admit(self) -> Admission | timedelta:
        """Whether a request may go now; the time until half-open when the breaker is open."""
        state = self.state
        if state is BreakerState.CLOSED:
            return "go"
        if state is BreakerState.OPEN:
            return self.retry_in()
        if self.probing:
            return "busy"
        self.probing = True
        return "probe"

    def succeeded(self, *, probe: bool) -> None:
        """A request got an answer that is not a failure; a probe's closes the breaker."""
        if probe:
            self.open_until = None
            self.failures.clear()
            self._probe_done()

    def failed(self, policy: CircuitBreaker, *, probe: bool) -> None:
        """A request failed: a probe's failure reopens; in closed, count it and maybe open."""
        now = self.clock()
        if probe:
            self.open_until = now + policy.open_for.total_seconds()
            self._probe_done()
            return
        if self.open_until is not None:
            return  # sent before the breaker opened: already counted as open
        self.failures.append(now)
        horizon = now - policy.window.total_seconds()
        while self.failures and self.failures[0] <= horizon:
            self.failures.popleft()
        if len(self.failures) >= policy.failures:
            self.open_until = now + policy.open_for.total_seconds()
            self.failures.clear()

    def released(self, *, probe: bool) -> None:
        """A request ended with no verdict (cancelled, refused before sending)."""
        if probe:
            self._probe_done()

    async def probe_finished(self, within: float) -> bool:
        """Wait until the probe in flight ends, up to ``within`` seconds."""
        if self._changed is None:
            self._changed = asyncio.Event()
        try:
            await asyncio.wait_for(self._changed.wait(), within)
        except TimeoutError:
            return False
        return True

    def _probe_done(self) -> None:
        self.probing = False
        if self._changed is not None:
            self._changed.set()
            self._changed = None


@dataclass
class Bucket:
    """One host's token bucket; ``tokens`` goes below zero while tokens are reserved ahead."""

    tokens: float
    updated: float

    def reserve(self, limit: RateLimit, now: float) -> tuple[bool, float]:
        """Take a token if one is free within ``limit.max_wait``.

        Returns:
            (taken, seconds until the token is free): when not taken, nothing is reserved.
        """
        capacity = limit.capacity
        self.tokens = min(capacity, self.tokens + (now - self.updated) * limit.per_second)
        self.updated = now
        wait = 0.0 if self.tokens >= 1 else (1 - self.tokens) / limit.per_second
        if wait > limit.max_wait.total_seconds():
            return False, wait
        self.tokens -= 1
        return True, wait


class HostProtection:
    """The worker's breakers and rate buckets, by host.

    Args:
        circuit_breaker: The worker's default breaker, for steps that do not set one.
        rate_limit: The worker's default rate limit, for steps that do not set one.
        clock: Monotonic seconds (tests pass their own).
        sleep: How waits are slept (tests pass their own).
    """

    def __init__(
        self,
        *,
        circuit_breaker: CircuitBreaker | None = None,
        rate_limit: RateLimit | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.circuit_breaker = circuit_breaker
        self.rate_limit = rate_limit
        self._clock = clock
        self._sleep = sleep
        self._breakers: dict[str, Breaker] = {}
        self._buckets: dict[str, Bucket] = {}

    def breaker(self, host: str) -> Breaker:
        """The breaker of ``host`` (created closed)."""
        if host not in self._breakers:
            self._breakers[host] = Breaker(self._clock)
        return self._breakers[host]

    async def call(
        self,
        host: str,
        send: Callable[[], Awaitable[T]],
        *,
        circuit_breaker: CircuitBreaker | Literal[False] | None = None,
        rate_limit: RateLimit | Literal[False] | None = None,
    ) -> T:
        """Run ``send`` (one request to ``host``) under the breaker and rate limit that apply.

        Args:
            host: The :func:`host_key` of the request.
            send: Sends the request.
            circuit_breaker: The step's setting: None for the worker's default, False for none.
            rate_limit: The step's setting: None for the worker's default, False for none.

        Raises:
            ApplicationError: ``CircuitOpen`` or ``RateLimited`` (retryable, with
                ``next_retry_delay``), or what ``send`` raises.
        """
        policy = self.circuit_breaker if circuit_breaker is None else circuit_breaker or None
        limit = self.rate_limit if rate_limit is None else rate_limit or None
        breaker = self.breaker(host) if policy is not None else None
        if breaker is not None and breaker.state is BreakerState.OPEN:
            raise errors.circuit_open(host, breaker.retry_in())
        if limit is not None:
            await self._take_token(host, limit)
        if breaker is None or policy is None:
            return await send()
        probe = await self._admit(host, breaker)
        try:
            result = await send()
        except ApplicationError as exc:
            verdict = _verdict(exc)
            if verdict is None:
                breaker.released(probe=probe)
            elif verdict:
                breaker.succeeded(probe=probe)
            else:
                breaker.failed(policy, probe=probe)
            raise
        except asyncio.CancelledError:
            if _timed_out():
                breaker.failed(policy, probe=probe)
            else:
                breaker.released(probe=probe)
            raise
        except BaseException:
            breaker.released(probe=probe)
            raise
        breaker.succeeded(probe=probe)
        return result

    async def _admit(self, host: str, breaker: Breaker) -> bool:
        """Whether this attempt is the probe; raises CircuitOpen when it may not go."""
        waited = 0.0
        while True:
            admission = breaker.admit()
            if isinstance(admission, timedelta):
                raise errors.circuit_open(host, admission)
            if admission != "busy":
                return admission == "probe"
            if waited >= PROBE_WAIT:
                raise errors.circuit_open(host, BUSY_RETRY)
            start = self._clock()
            await breaker.probe_finished(min(HEARTBEAT_EVERY, PROBE_WAIT - waited))
            _heartbeat()
            waited += max(self._clock() - start, 0.001)

    async def _take_token(self, host: str, limit: RateLimit) -> None:
        now = self._clock()
        bucket = self._buckets.get(host)
        if bucket is None:
            bucket = self._buckets[host] = Bucket(float(limit.capacity), now)
        taken, wait = bucket.reserve(limit, now)
        if not taken:
            raise errors.rate_limited(host, timedelta(seconds=wait))
        while wait > 0:
            step = min(wait, HEARTBEAT_EVERY)
            await self._sleep(step)
            wait -= step
            _heartbeat()


def _verdict(exc: ApplicationError) -> bool | None:
    """For the breaker: False for a failure (5xx, 429, network), True when the host answered,
    None when no request reached it (refused address, bad input)."""
    if exc.type == errors.NETWORK_ERROR:
        return False
    if exc.type == errors.HTTP_ERROR:
        return exc.non_retryable
    if exc.type in (errors.RESPONSE_TOO_LARGE, errors.TOO_MANY_REDIRECTS):
        return True
    return None


def _timed_out() -> bool:
    """Whether the running activity was cancelled because its attempt timed out."""
    if not activity.in_activity():
        return False
    details = activity.cancellation_details()
    return details is not None and details.timed_out


def _heartbeat() -> None:
    if activity.in_activity():
        with contextlib.suppress(RuntimeError):
            activity.heartbeat()
