"""Step activities inside real runs: retry policies measured against a local HTTP server,
timeouts, webhook idempotency across retries, and a plugin found by its entry point."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

from activities.client import HttpClient
from activities.netguard import AddressGuard
from activities.webhook import verify_signature
from tests.engine import dag_worker, progress, start_dag
from tests.steps import Probe
from worker.main import make_worker
from worker.settings import Settings


class Target:
    """A local HTTP server that fails a configurable number of times per path."""

    def __init__(self) -> None:
        self.hits: dict[str, list[float]] = defaultdict(list)
        self.headers: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.bodies: dict[str, list[bytes]] = defaultdict(list)
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path
        self.hits[path].append(time.monotonic())
        self.headers[path].append(dict(request.headers))
        self.bodies[path].append(await request.read())
        fail_times = int(request.query.get("fail", "0"))
        status = int(request.query.get("status", "500"))
        if len(self.hits[path]) <= fail_times:
            return web.json_response({"error": "not yet", "path": path}, status=status)
        return web.json_response({"ok": True, "attempt": len(self.hits[path])})

    def gaps(self, path: str) -> list[float]:
        times = self.hits[path]
        return [round(b - a, 3) for a, b in itertools.pairwise(times)]


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


SECRETS = {"DAGFLOW_SECRET_WEBHOOK": "whsec-test"}


@pytest.fixture
async def http_worker(client: Client, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Worker]:
    """A worker built like `dagflow worker`: built-in kinds, plugins, loopback allowed."""
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    settings = Settings(task_queue=f"tq-{uuid.uuid4()}", allowed_networks=["127.0.0.0/8"])
    http = HttpClient(guard=AddressGuard(settings.allowed_networks))
    worker = make_worker(client, settings, http)
    async with worker:
        yield worker
    await http.close()


def http_step(url: str, retry: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "retries",
        "steps": {"call": {"uses": "http", "with": {"url": url}, "retry": retry}},
    }


async def failing_run(client: Client, worker: Worker, definition: dict[str, Any]) -> str:
    handle = await start_dag(client, worker, definition)
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    return str(info.value.cause)


def assert_gaps(measured: list[float], expected: list[float]) -> None:
    """Gaps match the policy. (The Temporal server spaces activity retries at least about
    1 s apart whatever the policy says, so the policies here use intervals of 1 s and up.)"""
    assert len(measured) == len(expected), measured
    for got, want in zip(measured, expected, strict=True):
        assert want - 0.05 <= got <= want + 0.6, (measured, expected)


async def test_linear_backoff_waits_1_2_3_seconds(
    client: Client, http_worker: Worker, target: Target
) -> None:
    path = f"/linear-{uuid.uuid4().hex}"
    retry = {"max_attempts": 4, "backoff": "linear", "initial_interval": "1s", "increment": "1s"}
    message = await failing_run(client, http_worker, http_step(f"{target.url}{path}?fail=9", retry))
    assert "HttpError" in message and "500" in message
    assert_gaps(target.gaps(path), [1.0, 2.0, 3.0])


async def test_exponential_backoff_doubles(
    client: Client, http_worker: Worker, target: Target
) -> None:
    path = f"/exp-{uuid.uuid4().hex}"
    retry = {"max_attempts": 3, "backoff": "exponential", "initial_interval": "1s", "multiplier": 2}
    await failing_run(client, http_worker, http_step(f"{target.url}{path}?fail=9", retry))
    assert_gaps(target.gaps(path), [1.0, 2.0])


async def test_fixed_backoff_and_success_after_retries(
    client: Client, http_worker: Worker, target: Target
) -> None:
    path = f"/fixed-{uuid.uuid4().hex}"
    retry = {"max_attempts": 5, "backoff": "fixed", "initial_interval": "1s", "multiplier": 3}
    handle = await start_dag(client, http_worker, http_step(f"{target.url}{path}?fail=2", retry))
    await handle.result()
    assert_gaps(target.gaps(path), [1.0, 1.0])
    step = (await progress(handle)).steps[0]
    assert (step.status.value, step.attempts) == ("succeeded", 3)


async def test_backoff_none_and_non_retryable_make_one_attempt(
    client: Client, http_worker: Worker, target: Target
) -> None:
    none_path = f"/none-{uuid.uuid4().hex}"
    await failing_run(
        client, http_worker, http_step(f"{target.url}{none_path}?fail=9", {"backoff": "none"})
    )
    listed = f"/listed-{uuid.uuid4().hex}"
    await failing_run(
        client,
        http_worker,
        http_step(
            f"{target.url}{listed}?fail=9",
            {"max_attempts": 5, "initial_interval": "100ms", "non_retryable": ["HttpError"]},
        ),
    )
    assert len(target.hits[none_path]) == 1
    assert len(target.hits[listed]) == 1


async def test_4xx_is_not_retried_and_says_status_and_body(
    client: Client, http_worker: Worker, target: Target
) -> None:
    path = f"/gone-{uuid.uuid4().hex}"
    message = await failing_run(
        client,
        http_worker,
        http_step(f"{target.url}{path}?fail=9&status=404", {"max_attempts": 5}),
    )
    assert len(target.hits[path]) == 1
    assert "404" in message and "not yet" in message


async def test_429_and_5xx_are_retried(client: Client, http_worker: Worker, target: Target) -> None:
    path = f"/busy-{uuid.uuid4().hex}"
    handle = await start_dag(
        client,
        http_worker,
        http_step(f"{target.url}{path}?fail=1&status=429", {"initial_interval": "100ms"}),
    )
    out = await handle.result()
    assert out is None
    assert len(target.hits[path]) == 2


async def test_webhook_idempotency_key_is_stable_across_retries(
    client: Client, http_worker: Worker, target: Target
) -> None:
    path = f"/hook-{uuid.uuid4().hex}"
    handle = await start_dag(
        client,
        http_worker,
        {
            "name": "hooks",
            "steps": {
                "notify": {
                    "uses": "webhook",
                    "with": {"url": f"{target.url}{path}?fail=2", "payload": {"order": 7}},
                    "retry": {"initial_interval": "100ms", "max_attempts": 5},
                }
            },
            "output": "${{ steps.notify.output }}",
        },
    )
    assert await handle.result() == {"status": 200}
    keys = {h["Idempotency-Key"] for h in target.headers[path]}
    assert len(target.headers[path]) == 3 and len(keys) == 1
    for headers, body in zip(target.headers[path], target.bodies[path], strict=True):
        assert verify_signature(
            SECRETS["DAGFLOW_SECRET_WEBHOOK"],
            headers["X-Dagflow-Timestamp"],
            body,
            headers["X-Dagflow-Signature"],
        )


async def test_loopback_is_refused_without_allow_network(client: Client, target: Target) -> None:
    settings = Settings(task_queue=f"tq-{uuid.uuid4()}")
    http = HttpClient(guard=AddressGuard(settings.allowed_networks))
    path = f"/private-{uuid.uuid4().hex}"
    async with make_worker(client, settings, http) as worker:
        message = await failing_run(client, worker, http_step(f"{target.url}{path}", {}))
    await http.close()
    assert "AddressNotAllowed" in message
    assert path not in target.hits


async def test_plugin_from_entry_point_is_a_step_kind(client: Client, http_worker: Worker) -> None:
    handle = await start_dag(
        client,
        http_worker,
        {
            "name": "plugin",
            "steps": {"loud": {"uses": "shout", "with": {"text": "${{ input.word }}"}}},
            "output": "${{ steps.loud.output.text }}",
        },
        {"word": "hello"},
    )
    assert await handle.result() == "HELLO"


async def test_plain_exception_type_is_kept_for_non_retryable(
    client: Client, http_worker: Worker
) -> None:
    definition = {
        "name": "plugin-errors",
        "steps": {
            "unlucky": {
                "uses": "flaky",
                "with": {"failures": 3},
                "retry": {
                    "max_attempts": 5,
                    "initial_interval": "100ms",
                    "non_retryable": ["FlakyError"],
                },
                "on_error": "continue",
            }
        },
    }
    handle = await start_dag(client, http_worker, definition)
    await handle.result()
    step = (await progress(handle)).steps[0]
    assert step.status.value == "failed"
    assert step.attempts == 1
    assert step.error == "FlakyError: attempt 1 failed on purpose"


async def test_attempt_timeout_total_timeout_and_heartbeat_timeout(client: Client) -> None:
    probe = Probe()
    base = {"uses": "slow", "with": {"seconds": 5}, "on_error": "continue"}
    async with dag_worker(client, probe.activities()) as w:
        handle = await start_dag(
            client,
            w,
            {
                "name": "timeouts",
                "steps": {
                    "attempt": {
                        **base,
                        "timeout": "300ms",
                        "retry": {"max_attempts": 2, "initial_interval": "100ms"},
                    },
                    "total": {
                        **base,
                        "timeout": "400ms",
                        "total_timeout": "700ms",
                        "retry": {"max_attempts": 10, "initial_interval": "100ms"},
                    },
                    "heartbeat": {
                        **base,
                        "timeout": "10s",
                        "heartbeat_timeout": "300ms",
                        "retry": {"backoff": "none"},
                    },
                },
            },
        )
        started = time.monotonic()
        await asyncio.wait_for(handle.result(), 20)
        assert time.monotonic() - started < 5
        steps = {s.step: s for s in (await progress(handle)).steps}
        assert steps["attempt"].error == "timed out (start_to_close)"
        assert steps["attempt"].attempts == 2
        assert probe.calls["attempt"] == 2
        assert steps["total"].error is not None and "timed out" in steps["total"].error
        assert probe.calls["total"] <= 2
        assert steps["heartbeat"].error == "timed out (heartbeat)"
