"""Stopping and killing real `dagflow worker` processes: SIGTERM drains running activities
within the grace, activities that outlast it are retried by another worker, a second signal
cancels at once, and a worker killed outright (SIGKILL) in the middle of a 50-step run loses
no step: another worker replays the run and Temporal retries the step that was in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from temporalio.client import Client, WorkflowHandle

from starter.launch import start_run
from tests.engine import eventually, progress
from workflows.definition import Definition

DAGFLOW = str(Path(sys.executable).parent / "dagflow")
SECRET = "lifecycle-secret"


@dataclass
class Receiver:
    """A local HTTP server that steps call: ``/slow/{name}?s=S`` holds the first request to each
    name for S seconds (or until released) and answers later ones at once; ``/hook`` records
    each webhook's step and Idempotency-Key, and holds the first delivery of ``hold``."""

    url: str = ""
    calls: Counter[str] = field(default_factory=Counter)
    deliveries: list[tuple[str, str]] = field(default_factory=list)
    hold: str | None = None
    arrived: dict[str, asyncio.Event] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def seen(self, name: str) -> asyncio.Event:
        return self.arrived.setdefault(name, asyncio.Event())

    async def slow(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.calls[name] += 1
        self.seen(name).set()
        if self.calls[name] == 1:
            await self._held(float(request.query["s"]))
        return web.json_response({"name": name, "call": self.calls[name]})

    async def hook(self, request: web.Request) -> web.Response:
        step = (await request.json())["step"]
        self.deliveries.append((step, request.headers["Idempotency-Key"]))
        self.seen(step).set()
        if step == self.hold and sum(s == step for s, _ in self.deliveries) == 1:
            await self._held(60)
        return web.json_response({})

    async def _held(self, seconds: float) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self.release.wait(), seconds)


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_get("/slow/{name}", rec.slow)
    app.router.add_post("/hook", rec.hook)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    rec.url = f"http://{host}:{port}"
    try:
        yield rec
    finally:
        rec.release.set()
        await runner.cleanup()


@dataclass
class WorkerProcess:
    """A `dagflow worker` subprocess and its log (stdout and stderr), read as it comes."""

    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @property
    def log(self) -> str:
        return "".join(self.lines)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.lines.append(line.decode())

    async def exited(self, within: float = 90) -> int:
        code = await asyncio.wait_for(self.proc.wait(), within)
        if self.reader is not None:
            await asyncio.wait_for(self.reader, 10)
        return code


@asynccontextmanager
async def worker_process(
    address: str, queue: str, *, grace: float, extra: Sequence[str] = ()
) -> AsyncIterator[WorkerProcess]:
    """A `dagflow worker` on ``queue`` that may call 127.0.0.1, polling when this yields;
    killed on the way out if the test has not stopped it."""
    env = {
        **os.environ,
        "DAGFLOW_SECRET_WEBHOOK": SECRET,
        "DAGFLOW_ALLOWED_NETWORKS": "127.0.0.0/8",
    }
    proc = await asyncio.create_subprocess_exec(
        DAGFLOW, "worker", "--address", address, "--task-queue", queue,
        "--shutdown-grace", str(grace), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    worker = WorkerProcess(proc)
    worker.reader = asyncio.create_task(worker._read())
    try:

        async def polling() -> bool:
            assert proc.returncode is None, worker.log
            return "worker polling" in worker.log

        await eventually(polling, within=60)
        yield worker
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        worker.reader.cancel()


async def start(client: Client, queue: str, definition: dict[str, Any]) -> WorkflowHandle[Any, Any]:
    handle, _ = await start_run(
        client, Definition.model_validate(definition), task_queue=queue, tenant="acme"
    )
    return handle


async def wait_for(event: asyncio.Event, within: float = 60) -> None:
    await asyncio.wait_for(event.wait(), within)


async def last_failure(handle: WorkflowHandle[Any, Any]) -> tuple[int, str, str]:
    """The attempt, and the type and message of the failure before it, of the run's last
    started activity (Temporal keeps an attempt's failure on the next attempt's start)."""
    found = (0, "", "")
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            failure = started.last_failure
            found = (started.attempt, failure.application_failure_info.type, failure.message)
    return found


def slow_step(rec: Receiver, name: str, seconds: float, **step: Any) -> dict[str, Any]:
    return {"uses": "http", "with": {"url": f"{rec.url}/slow/{name}?s={seconds}"}, **step}


async def test_sigterm_lets_a_running_step_finish_within_the_grace_and_exits_0(
    client: Client, temporal_address: str
) -> None:
    queue = f"tq-{uuid.uuid4()}"
    async with receiver() as rec, AsyncExitStack() as stack:
        first = await stack.enter_async_context(worker_process(temporal_address, queue, grace=60))
        handle = await start(
            client, queue, {"name": "drain", "steps": {"slow": slow_step(rec, "slow", 5)}}
        )
        await wait_for(rec.seen("slow"))
        loop = asyncio.get_running_loop()
        signalled = loop.time()
        first.proc.send_signal(signal.SIGTERM)
        assert await first.exited() == 0, first.log
        assert loop.time() - signalled > 2.5  # it waited for the step (held 5 s)
        assert "1 activities running get 60.0s to finish" in first.log
        assert "shut down: 1 activities finished, 0 cancelled" in first.log
        # The step's result reached Temporal; a second worker carries the run on from there.
        await stack.enter_async_context(worker_process(temporal_address, queue, grace=5))
        assert await asyncio.wait_for(handle.result(), 60) is None
        (step,) = (await progress(handle)).steps
    assert (step.status, step.attempts) == ("succeeded", 1)
    assert rec.calls["slow"] == 1


async def test_a_step_outlasting_the_grace_is_cancelled_and_retried_by_another_worker(
    client: Client, temporal_address: str
) -> None:
    queue = f"tq-{uuid.uuid4()}"
    async with receiver() as rec, AsyncExitStack() as stack:
        definition = {"name": "outlast", "steps": {"long": slow_step(rec, "long", 60)}}
        first = await stack.enter_async_context(worker_process(temporal_address, queue, grace=1))
        handle = await start(client, queue, definition)
        await wait_for(rec.seen("long"))
        first.proc.send_signal(signal.SIGTERM)
        assert await first.exited(within=30) == 0, first.log
        assert "shut down: 0 activities finished, 1 cancelled" in first.log
        second = await stack.enter_async_context(worker_process(temporal_address, queue, grace=5))
        await asyncio.wait_for(handle.result(), 60)
        (step,) = (await progress(handle)).steps
    assert (step.status, step.attempts) == ("succeeded", 2)
    assert rec.calls["long"] == 2
    assert await last_failure(handle) == (
        2,
        "WorkerShutdown",
        "the worker shut down before attempt 1 finished",
    )
    assert "shutting down" not in second.log


async def test_a_second_signal_cancels_running_steps_at_once(
    client: Client, temporal_address: str
) -> None:
    queue = f"tq-{uuid.uuid4()}"
    async with receiver() as rec, AsyncExitStack() as stack:
        definition = {"name": "impatient", "steps": {"long": slow_step(rec, "long", 60)}}
        first = await stack.enter_async_context(worker_process(temporal_address, queue, grace=600))
        handle = await start(client, queue, definition)
        await wait_for(rec.seen("long"))
        first.proc.send_signal(signal.SIGTERM)

        async def draining() -> bool:
            return "shutting down" in first.log

        await eventually(draining, within=30)
        first.proc.send_signal(signal.SIGINT)  # Ctrl-C does the same as a second SIGTERM
        assert await first.exited(within=30) == 0, first.log  # not the 600 s grace
        assert "second signal: cancelling 1 running activities now" in first.log
        assert "shut down: 0 activities finished, 1 cancelled" in first.log
        await stack.enter_async_context(worker_process(temporal_address, queue, grace=5))
        await asyncio.wait_for(handle.result(), 60)
        (step,) = (await progress(handle)).steps
    assert (step.status, step.attempts) == ("succeeded", 2)
    assert (await last_failure(handle))[:2] == (2, "WorkerShutdown")


STEPS = 50
HELD = 20


def hooks_chain(rec: Receiver) -> dict[str, Any]:
    """s0 -> s1 -> ... -> s49, each a webhook to ``rec`` naming its step. One attempt may take
    4 s, so an attempt lost with its worker is retried after at most 4 s."""
    steps: dict[str, Any] = {}
    for i in range(STEPS):
        steps[f"s{i}"] = {
            "uses": "webhook",
            "with": {"url": f"{rec.url}/hook", "payload": {"step": f"s{i}"}},
            **({"needs": [f"s{i - 1}"]} if i else {}),
        }
    return {
        "name": "kill-chain",
        "defaults": {
            "timeout": "4s",
            "retry": {"max_attempts": 20, "backoff": "fixed", "initial_interval": "1s"},
        },
        "steps": steps,
    }


async def test_a_worker_killed_mid_run_loses_no_step(client: Client, temporal_address: str) -> None:
    queue = f"tq-{uuid.uuid4()}"
    async with receiver() as rec, AsyncExitStack() as stack:
        rec.hold = f"s{HELD}"  # its first delivery hangs: the kill finds it in flight
        first = await stack.enter_async_context(worker_process(temporal_address, queue, grace=5))
        handle = await start(client, queue, hooks_chain(rec))
        await wait_for(rec.seen(f"s{HELD}"), within=120)

        async def in_the_middle() -> bool:
            steps = {s.step: s.status for s in (await progress(handle)).steps}
            return sum(status == "succeeded" for status in steps.values()) >= HELD

        # s0..s19 succeeded and s20 in flight (unless, on a slow machine, its attempt timed
        # out first and the chain went on: it was still delivered twice, and the kill still
        # comes in the middle)
        await eventually(in_the_middle, within=60)
        first.proc.kill()
        assert await first.exited() == -signal.SIGKILL
        assert "shutting down" not in first.log  # no drain: killed outright
        await stack.enter_async_context(worker_process(temporal_address, queue, grace=5))
        await asyncio.wait_for(handle.result(), 180)
        run = await progress(handle)
    assert run.status == "completed"
    assert [s.step for s in run.steps] == [f"s{i}" for i in range(STEPS)]
    assert all(s.status == "succeeded" for s in run.steps)
    # The step in flight at the kill was delivered again by its retry, with the same
    # Idempotency-Key; a receiver that drops repeated keys acts on every step exactly once.
    delivered = Counter(step for step, _ in rec.deliveries)
    keys = {step: {key for s, key in rec.deliveries if s == step} for step in delivered}
    assert set(delivered) == {s.step for s in run.steps}
    assert all(len(k) == 1 for k in keys.values()), keys
    assert len({key for (key,) in keys.values()}) == STEPS
    assert delivered[f"s{HELD}"] >= 2
    attempts = {s.step: s.attempts for s in run.steps}
    assert attempts[f"s{HELD}"] >= 2
    # No step is delivered more often than it was attempted (more than once only if an
    # attempt timed out on a loaded machine).
    assert all(delivered[step] <= attempts[step] for step in delivered), (delivered, attempts)


async def test_sigterm_lets_a_running_local_step_finish_and_repeats_nothing(
    client: Client, temporal_address: str
) -> None:
    """The SDK finishes a workflow task's local activities before the worker may stop, so a
    local step running at SIGTERM runs to its end even past the grace; its result is written
    with the task, and another worker carries the run on without repeating a step."""
    queue = f"tq-{uuid.uuid4()}"
    async with receiver() as rec, AsyncExitStack() as stack:
        definition = {
            "name": "local-drain",
            "defaults": {"execution": "local"},
            "steps": {
                "first": slow_step(rec, "first", 0),
                "slow": slow_step(rec, "slow", 4, needs="first"),
                "last": slow_step(rec, "last", 0, needs="slow"),
            },
            "output": "${{ [steps.first, steps.slow, steps.last].map(s, s.output.body) }}",
        }
        first = await stack.enter_async_context(worker_process(temporal_address, queue, grace=1))
        handle = await start(client, queue, definition)
        await wait_for(rec.seen("slow"))
        loop = asyncio.get_running_loop()
        signalled = loop.time()
        first.proc.send_signal(signal.SIGTERM)
        assert await first.exited() == 0, first.log
        assert loop.time() - signalled > 2.5  # past the 1 s grace: the step is held 4 s
        assert "0 cancelled" in first.log
        await stack.enter_async_context(worker_process(temporal_address, queue, grace=5))
        output = await asyncio.wait_for(handle.result(), 60)
        steps = (await progress(handle)).steps
    assert output == [{"name": name, "call": 1} for name in ("first", "slow", "last")]
    assert rec.calls == {"first": 1, "slow": 1, "last": 1}
    assert [(s.step, s.status, s.attempts) for s in steps] == [
        ("first", "succeeded", 1),
        ("slow", "succeeded", 1),
        ("last", "succeeded", 1),
    ]
