"""Per-host circuit breakers and rate limits of ``http`` and ``webhook`` steps.

The state machine and the token bucket run on an injected clock; then real runs on a real
Temporal dev server call a local aiohttp server: a breaker opens after the server's failures,
later steps to that host fail fast without a request reaching it, and after ``open_for`` the
probe goes through; a rate limit is measured at the server.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker
from yarl import URL

from activities.client import HttpClient
from activities.interceptor import LinearBackoffInterceptor, with_linear_delay
from activities.netguard import AddressGuard
from activities.protection import Breaker, BreakerState, HostProtection, host_key
from activities.registry import builtin_step_activities
from activities.secrets import SecretStore
from tests.engine import dag_worker, progress, start_dag
from worker.main import http_client, make_worker
from worker.settings import Settings
from workflows.definition import CircuitBreaker, RateLimit
from workflows.types import LinearBackoff
from workflows.validation import validate_definition


class Clock:
    """Monotonic seconds that a test moves by hand; sleeping moves it too."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


POLICY = CircuitBreaker(failures=3, window=timedelta(seconds=10), open_for=timedelta(seconds=5))


# --- the state machine ----------------------------------------------------------------------------


def test_breaker_opens_after_failures_within_the_window() -> None:
    clock = Clock()
    breaker = Breaker(clock)
    breaker.failed(POLICY, probe=False)
    clock.now += 11  # the first failure leaves the window
    breaker.failed(POLICY, probe=False)
    breaker.failed(POLICY, probe=False)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.admit() == "go"
    breaker.succeeded(probe=False)  # successes do not reset the count
    breaker.failed(POLICY, probe=False)
    assert breaker.state is BreakerState.OPEN
    assert breaker.admit() == timedelta(seconds=5)
    clock.now += 2
    assert breaker.retry_in() == timedelta(seconds=3)


def test_half_open_probe_success_closes() -> None:
    clock = Clock()
    breaker = Breaker(clock)
    for _ in range(3):
        breaker.failed(POLICY, probe=False)
    clock.now += 5
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.admit() == "probe"
    assert breaker.admit() == "busy"  # one probe at a time
    breaker.failed(POLICY, probe=False)  # a request sent earlier does not count
    breaker.succeeded(probe=True)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.admit() == "go"
    breaker.failed(POLICY, probe=False)
    breaker.failed(POLICY, probe=False)
    assert breaker.state is BreakerState.CLOSED  # the count started again


def test_half_open_probe_failure_opens_again() -> None:
    clock = Clock()
    breaker = Breaker(clock)
    for _ in range(3):
        breaker.failed(POLICY, probe=False)
    clock.now += 6
    assert breaker.admit() == "probe"
    clock.now += 1
    breaker.failed(POLICY, probe=True)
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in() == timedelta(seconds=5)
    clock.now += 5
    assert breaker.admit() == "probe"
    breaker.released(probe=True)  # cancelled without an answer: another probe may go
    assert breaker.admit() == "probe"


async def _answer(status: int | None) -> str:
    if status is None:
        raise ApplicationError("refused", type="NetworkError")
    if status >= 400:
        retryable = status >= 500 or status == 429
        raise ApplicationError(f"{status}", type="HttpError", non_retryable=not retryable)
    return "ok"


async def test_protection_classifies_answers_and_fails_fast_while_open() -> None:
    clock = Clock()
    protection = HostProtection(circuit_breaker=POLICY, clock=clock, sleep=clock.sleep)
    host = "http://api.example:80"
    for status in (404, 400, 500, None):  # 4xx are answers, not failures
        with pytest.raises(ApplicationError):
            await protection.call(host, functools.partial(_answer, status))
    assert protection.breaker(host).state is BreakerState.CLOSED
    with pytest.raises(ApplicationError):
        await protection.call(host, lambda: _answer(429))
    assert protection.breaker(host).state is BreakerState.OPEN
    sent: list[int] = []

    async def send() -> str:
        sent.append(1)
        return "ok"

    with pytest.raises(ApplicationError) as info:
        await protection.call(host, send)
    assert (info.value.type, info.value.non_retryable) == ("CircuitOpen", False)
    assert info.value.next_retry_delay == timedelta(seconds=5)
    assert sent == []
    assert await protection.call(host, send, circuit_breaker=False) == "ok"  # the step opts out
    assert await protection.call("http://other.example:80", send) == "ok"  # per host
    clock.now += 5
    assert await protection.call(host, send) == "ok"  # the probe
    assert protection.breaker(host).state is BreakerState.CLOSED


async def test_attempts_wait_for_the_probe_in_flight() -> None:
    protection = HostProtection(circuit_breaker=POLICY)
    host = "http://api.example:80"
    breaker = protection.breaker(host)
    breaker.open_until = time.monotonic() - 1  # half-open
    release = asyncio.Event()

    async def slow_probe() -> str:
        await release.wait()
        return "probe"

    probe = asyncio.create_task(protection.call(host, slow_probe))
    await asyncio.sleep(0.01)
    follower = asyncio.create_task(protection.call(host, lambda: _answer(200)))
    await asyncio.sleep(0.05)
    assert not follower.done()
    release.set()
    assert (await probe, await follower) == ("probe", "ok")


def test_circuit_open_delay_survives_linear_backoff() -> None:
    """The linear-backoff interceptor keeps the breaker's delay when it is the longer one."""
    error = ApplicationError("open", type="CircuitOpen", next_retry_delay=timedelta(seconds=20))
    backoff = LinearBackoff(initial=timedelta(seconds=1), increment=timedelta(seconds=1))
    delayed = with_linear_delay(error, backoff, attempt=1)
    assert isinstance(delayed, ApplicationError)
    assert (delayed.type, delayed.next_retry_delay) == ("CircuitOpen", timedelta(seconds=20))


# --- the token bucket ---------------------------------------------------------------------------


async def test_rate_limit_waits_for_tokens_in_order_then_fails_past_max_wait() -> None:
    clock = Clock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:  # the clock stands still: tokens stay reserved
        slept.append(seconds)

    limit = RateLimit(per_second=2, burst=2, max_wait=timedelta(seconds=1))
    protection = HostProtection(rate_limit=limit, clock=clock, sleep=sleep)
    host = "http://api.example:80"
    for _ in range(2):  # the burst goes at once
        assert await protection.call(host, lambda: _answer(200)) == "ok"
    assert slept == []
    assert await protection.call(host, lambda: _answer(200)) == "ok"
    assert await protection.call(host, lambda: _answer(200)) == "ok"
    assert slept == [0.5, 1.0]  # each waits for the token after those reserved before it
    with pytest.raises(ApplicationError) as info:  # the next token is 1.5 s away
        await protection.call(host, lambda: _answer(200))
    assert (info.value.type, info.value.non_retryable) == ("RateLimited", False)
    assert info.value.next_retry_delay == timedelta(seconds=1.5)
    assert await protection.call(host, lambda: _answer(200), rate_limit=False) == "ok"
    clock.now += 1.5
    assert await protection.call(host, lambda: _answer(200)) == "ok"
    assert slept == [0.5, 1.0]


def test_burst_defaults_to_per_second_rounded_up() -> None:
    assert RateLimit(per_second=2.5).capacity == 3
    assert RateLimit(per_second=0.2).capacity == 1
    assert RateLimit(per_second=10, burst=20).capacity == 20


def test_host_key_is_scheme_host_and_port() -> None:
    assert host_key(URL("https://API.example/a?b")) == "https://api.example:443"
    assert host_key(URL("http://127.0.0.1:8080/x")) == "http://127.0.0.1:8080"


# --- validation ----------------------------------------------------------------------------------


def test_bad_settings_fail_validation_naming_the_field() -> None:
    definition = {
        "name": "protected",
        "steps": {
            "a": {
                "uses": "http",
                "with": {
                    "url": "https://api.example",
                    "circuit_breaker": {"failures": 0, "window": "soon", "open": "1s"},
                    "rate_limit": {"burst": 0},
                },
            },
            "b": {
                "uses": "webhook",
                "with": {
                    "url": "https://hooks.example",
                    "circuit_breaker": True,
                    "rate_limit": {"per_second": -1, "max_wait": "0s"},
                },
            },
            "c": {
                "uses": "http",
                "with": {
                    "url": "https://api.example",
                    "circuit_breaker": False,
                    "rate_limit": {"per_second": 2.5},
                },
            },
        },
    }
    problems = {p.path: p.message for p in validate_definition(definition, None).problems}
    prefix = "steps.a.with."
    assert problems[prefix + "circuit_breaker.failures"] == "must be at least 1, got 0"
    assert problems[prefix + "circuit_breaker.window"].startswith("not a duration: 'soon'")
    assert "unknown field 'open'" in problems[prefix + "circuit_breaker"]
    assert "per_second" in problems[prefix + "rate_limit"]
    assert problems[prefix + "rate_limit.burst"] == "must be at least 1, got 0"
    assert "a mapping" in problems["steps.b.with.circuit_breaker"]
    assert "greater than 0" in problems["steps.b.with.rate_limit.per_second"]
    assert "positive" in problems["steps.b.with.rate_limit.max_wait"]
    assert not any(path.startswith("steps.c.") for path in problems)


# --- real runs against a local server -----------------------------------------------------------


class Target:
    """A local server: ``/down/*`` answers 500, ``/slow/*`` after 3 s, anything else 200 at
    once; it records every hit."""

    def __init__(self) -> None:
        self.hits: dict[str, list[float]] = defaultdict(list)
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.hits[request.path].append(time.monotonic())
        if request.path.startswith("/slow"):
            await asyncio.sleep(3)
        if request.path.startswith("/down"):
            return web.json_response({"error": "down"}, status=500)
        return web.json_response({"ok": True})


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[Target]:
    t = Target()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", t.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    t.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield t
    await runner.cleanup()


@pytest.fixture
async def worker(client: Client) -> AsyncIterator[Worker]:
    """A worker like `dagflow worker --allow-network 127.0.0.0/8`, with its own breakers."""
    http = HttpClient(guard=AddressGuard(["127.0.0.0/8"]))
    secrets = SecretStore(environ={"DAGFLOW_SECRET_WEBHOOK": "whsec-protect"})
    kinds = builtin_step_activities(client=http, secrets=secrets)
    async with dag_worker(client, list(kinds.values()), [LinearBackoffInterceptor()]) as w:
        yield w
    await http.close()


BREAKER = {"failures": 3, "window": "30s", "open_for": "3s"}


async def test_open_breaker_fails_fast_then_the_probe_closes_it(
    client: Client, worker: Worker, target: Target
) -> None:
    tag = uuid.uuid4().hex
    down, up, hook = f"/down/{tag}", f"/up/{tag}", f"/hook/{tag}"
    breaking = {
        "name": "breaking",
        "steps": {
            "call": {
                "uses": "http",
                "for_each": [1, 2, 3],
                "with": {"url": f"{target.url}{down}", "circuit_breaker": BREAKER},
                "retry": {"backoff": "none"},
                "on_error": "continue",
            }
        },
    }
    await (await start_dag(client, worker, breaking)).result()
    opened = target.hits[down][-1]
    assert len(target.hits[down]) == 3
    later = {
        "name": "later",
        "steps": {
            "once": {  # one attempt: it meets the open breaker and fails without a request
                "uses": "webhook",
                "with": {"url": f"{target.url}{hook}", "circuit_breaker": BREAKER},
                "retry": {"backoff": "none"},
                "on_error": "continue",
            },
            "patient": {  # retried when the breaker lets its probe through
                "uses": "http",
                "with": {"url": f"{target.url}{up}", "circuit_breaker": BREAKER},
                "retry": {"max_attempts": 3, "backoff": "fixed", "initial_interval": "1s"},
            },
        },
        "output": "${{ steps.patient.output.body }}",
    }
    handle = await start_dag(client, worker, later)
    assert await asyncio.wait_for(handle.result(), 30) == {"ok": True}
    steps = {s.step: s for s in (await progress(handle)).steps}
    assert steps["once"].status.value == "failed"
    assert steps["once"].error is not None and "CircuitOpen" in steps["once"].error
    assert (steps["patient"].status.value, steps["patient"].attempts) == ("succeeded", 2)
    assert hook not in target.hits
    assert len(target.hits[up]) == 1
    assert target.hits[up][0] - opened >= 3.0 - 0.05  # the probe waited for open_for


async def test_rate_limit_holds_at_the_server(
    client: Client, worker: Worker, target: Target
) -> None:
    path = f"/limited/{uuid.uuid4().hex}"
    per_second, burst, items = 10, 5, 30
    definition = {
        "name": "limited",
        "steps": {
            "call": {
                "uses": "http",
                "for_each": list(range(items)),
                "concurrency": items,
                "with": {
                    "url": f"{target.url}{path}",
                    "rate_limit": {"per_second": per_second, "burst": burst},
                },
            }
        },
    }
    handle = await start_dag(client, worker, definition)
    await asyncio.wait_for(handle.result(), 60)
    hits = sorted(target.hits[path])
    assert len(hits) == items
    assert hits[-1] - hits[0] >= (items - burst) / per_second - 0.2  # the limit held them back
    for window in (1, 2):  # what the server saw in any 1 s and 2 s
        most = max(sum(1 for t in hits if s <= t < s + window) for s in hits)
        assert most <= burst + per_second * window, (window, most)


# --- worker defaults -----------------------------------------------------------------------------


def test_worker_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGFLOW_HTTP_CIRCUIT_BREAKER", '{"failures": 2, "open_for": "1m"}')
    monkeypatch.setenv("DAGFLOW_HTTP_RATE_LIMIT", '{"per_second": 10, "burst": 20}')
    protection = http_client(Settings()).protection
    assert protection.circuit_breaker == CircuitBreaker(
        failures=2, window=timedelta(seconds=30), open_for=timedelta(minutes=1)
    )
    assert protection.rate_limit == RateLimit(per_second=10, burst=20)
    monkeypatch.setenv("DAGFLOW_HTTP_CIRCUIT_BREAKER", "off")
    monkeypatch.delenv("DAGFLOW_HTTP_RATE_LIMIT")
    protection = http_client(Settings()).protection
    assert (protection.circuit_breaker, protection.rate_limit) == (None, None)


def test_bad_worker_defaults_name_the_setting() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(http_circuit_breaker="{failures: 2}", http_rate_limit='{"per_second": 0}')
    problems = {".".join(map(str, e["loc"])): e["msg"] for e in info.value.errors()}
    assert "not JSON" in problems["http_circuit_breaker"]
    assert "greater than 0" in problems["http_rate_limit.per_second"]


async def test_an_attempt_that_times_out_is_a_failure(
    client: Client, worker: Worker, target: Target
) -> None:
    tag = uuid.uuid4().hex
    breaker = {"failures": 1, "open_for": "1m"}
    slow = {
        "name": "slow",
        "steps": {
            "call": {
                "uses": "http",
                "with": {"url": f"{target.url}/slow/{tag}", "circuit_breaker": breaker},
                "timeout": "1s",
                "retry": {"backoff": "none"},
                "on_error": "continue",
            },
        },
    }
    await asyncio.wait_for((await start_dag(client, worker, slow)).result(), 30)
    after = {
        "name": "after",
        "steps": {
            "call": {
                "uses": "http",
                "with": {"url": f"{target.url}/fast/{tag}", "circuit_breaker": breaker},
                "retry": {"backoff": "none"},
                "on_error": "continue",
            },
        },
    }
    handle = await start_dag(client, worker, after)
    await asyncio.wait_for(handle.result(), 30)
    step = (await progress(handle)).steps[0]
    assert step.error is not None and "CircuitOpen" in step.error, step.error
    assert f"/fast/{tag}" not in target.hits


async def test_worker_default_applies_to_steps_that_set_none(
    client: Client, target: Target
) -> None:
    settings = Settings(
        task_queue=f"tq-{uuid.uuid4()}",
        allowed_networks=["127.0.0.0/8"],
        http_circuit_breaker='{"failures": 1, "open_for": "1m"}',
    )
    http = http_client(settings)
    tag = uuid.uuid4().hex

    def call(path: str, **with_: Any) -> dict[str, Any]:
        return {
            "uses": "http",
            "with": {"url": f"{target.url}{path}", **with_},
            "retry": {"backoff": "none"},
            "on_error": "continue",
        }

    async with make_worker(client, settings, http) as running:
        trip = {"name": "trip", "steps": {"down": call(f"/down/{tag}")}}
        await asyncio.wait_for((await start_dag(client, running, trip)).result(), 30)
        definition = {
            "name": "after-trip",
            "steps": {
                "guarded": call(f"/guarded/{tag}"),
                "opted_out": call(f"/opted-out/{tag}", circuit_breaker=False),
            },
        }
        handle = await start_dag(client, running, definition)
        await asyncio.wait_for(handle.result(), 30)
        steps = {s.step: s for s in (await progress(handle)).steps}
    await http.close()
    assert steps["guarded"].error is not None and "CircuitOpen" in steps["guarded"].error
    assert f"/guarded/{tag}" not in target.hits
    assert steps["opted_out"].status.value == "succeeded"
