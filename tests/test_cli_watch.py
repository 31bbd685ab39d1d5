"""`dagflow runs watch`: the live view in a real terminal (tmux), and its JSON lines."""

from __future__ import annotations

import asyncio
import itertools
import os
import shlex
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from starter.api import RunDetail, RunTrace, StepTrace
from starter.client import DagflowClient
from starter.commands.watch import follow, frame
from tests import test_cli_resources as resources
from tests.starter import Starter
from tests.steps import Probe
from tests.test_cli_resources import DAGFLOW, Cli, flaky, tenant_cli, write
from workflows.types import RunStatus, StepInput

sqlite, service = resources.sqlite, resources.service
"""The resource tests' fixtures: a service on SQLite for this module."""


@pytest.fixture
async def cli_env(service: Starter, client: Client, tmp_path: Path) -> AsyncIterator[Cli]:
    """A new tenant, and a worker whose ``flaky`` step holds while ``with.hold`` is true
    until the test sets ``probe.release``."""
    probe = Probe()

    @activity.defn(name="flaky")
    async def flaky_held(inp: StepInput) -> Any:
        probe.calls[inp.key] += 1
        if inp.with_.get("hold"):
            await probe.release.wait()
        if probe.calls[inp.key] <= int(inp.with_.get("fail_times", 0)):
            raise ApplicationError(f"flaky failure {probe.calls[inp.key]}", type="Flaky")
        return inp.with_.get("value", "ok")

    async with tenant_cli(service, client, tmp_path, [flaky_held], probe) as cli:
        yield cli


TMUX = shutil.which("tmux")


def fanout(name: str, charge_failures: int) -> dict[str, Any]:
    """``first``, then six items two at a time (items 3 to 6 held while ``probe.release`` is
    clear), then ``charge`` (which parks after ``charge_failures`` failures, if any)."""
    return {
        "name": name,
        "steps": {
            "first": flaky("one"),
            "items": {
                "needs": ["first"],
                "for_each": "${{ [1, 2, 3, 4, 5, 6] }}",
                "concurrency": 2,
                "uses": "flaky",
                "with": {"value": "${{ item }}", "hold": "${{ item > 2 }}"},
                "timeout": "1m",
            },
            "charge": flaky("paid", charge_failures, needs=["items"], on_error="manual"),
        },
        "output": "${{ steps.charge.output }}",
    }


class Terminal:
    """A detached tmux session of 120x40 on a private server (its own socket)."""

    def __init__(self, socket: Path) -> None:
        assert TMUX is not None
        self.tmux = TMUX
        self.socket = socket

    async def run(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.tmux,
            "-S",
            str(self.socket),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        return out.decode()

    async def start(self, command: str, cwd: Path) -> None:
        await self.run(
            "new-session", "-d", "-s", "watch", "-x", "120", "-y", "40", "-c", str(cwd), command
        )

    async def screen(self) -> str:
        return await self.run("capture-pane", "-p", "-t", "watch")

    async def until(self, check: Callable[[str], bool], within: float = 30.0) -> str:
        """The screen once ``check`` accepts it."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            screen = await self.screen()
            if check(screen):
                return screen
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the screen never showed it:\n{screen}")
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        await self.run("kill-server")


def row(screen: str, step: str) -> list[str]:
    """The cells of a step's row on the screen, cut where the header's columns start."""
    lines = screen.splitlines()
    [header] = [line for line in lines if line.startswith("STEP ")]
    starts = [header.index(name) for name in header.split()]
    [line] = [line for line in lines if line.startswith(f"{step} ")]
    ends = [*starts[1:], len(line)]
    return [line[a:b].strip() for a, b in zip(starts, ends, strict=True)]


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed: the live view needs a terminal")
async def test_watch_redraws_the_steps_in_place_and_names_the_parked_step(
    cli_env: Cli, tmp_path: Path
) -> None:
    await cli_env.ok("definitions", "push", write(tmp_path, "fanout.json", fanout("fanout", 1)))
    cli_env.probe.release.clear()  # the items run until the test lets them finish
    await cli_env.ok("runs", "start", "fanout", "--key", "w-1")
    env = [f"DAGFLOW_API_URL={cli_env.url}", f"DAGFLOW_API_KEY={cli_env.key}"]
    watch = [DAGFLOW, "runs", "watch", "fanout/w-1", "--interval", "0.2"]
    terminal = Terminal(tmp_path / "tmux.sock")
    await terminal.start(
        shlex.join(["env", *env, *watch]) + '; echo "exit=$?"; sleep 600', tmp_path
    )
    try:
        running = await terminal.until(lambda s: "items " in s and "2/6" in s)
        lines = running.splitlines()
        assert lines[0].startswith("fanout/w-1  version 1  running  ")
        assert lines[1].split() == ["STEP", "KIND", "STATUS", "ATTEMPTS", "ELAPSED", "DETAIL"]
        assert row(running, "first")[:4] == ["first", "flaky", "succeeded", "1"]
        assert row(running, "items")[:3] == ["items", "flaky", "running"]
        assert row(running, "items")[-1] == "[######..............]  2/6"
        assert row(running, "charge") == ["charge", "flaky", "pending", "", "", ""]

        def later(screen: str) -> bool:
            return row(screen, "items")[-2] != row(running, "items")[-2]

        ticking = await terminal.until(later)  # the elapsed time moves on, in place
        assert ticking.count("STEP ") == 1 and ticking.count("fanout/w-1  version 1") == 1

        cli_env.probe.release.set()
        final = await terminal.until(lambda s: "exit=" in s)
        assert row(final, "items")[:3] == ["items", "flaky", "succeeded"]
        assert row(final, "items")[-1] == "[####################]  6/6"
        assert row(final, "charge")[:3] == ["charge", "flaky", "needs_attention"]
        assert row(final, "charge")[-1] == "Flaky: flaky failure 1"
        assert final.count("STEP ") == 1, final  # redrawn in place, never scrolled
        hint = final[final.index("run fanout/w-1 needs attention") :].splitlines()
        assert hint[0] == "run fanout/w-1 needs attention: step charge failed after 1 attempt: " + (
            "Flaky: flaky failure 1"
        )
        commands = [line.split("#")[0].strip() for line in hint[1:4]]
        assert commands == [
            "dagflow runs retry fanout/w-1 charge",
            "dagflow runs complete fanout/w-1 charge --output JSON",
            "dagflow runs skip fanout/w-1 charge",
        ]
        assert "exit=1" in final.splitlines()
    finally:
        cli_env.probe.release.set()
        await terminal.close()

    retried = await cli_env.ok("runs", "retry", "fanout/w-1", "charge")
    assert retried.out.strip() == "run fanout/w-1: step charge runs again"
    done = await cli_env("runs", "watch", "fanout/w-1", "--json", "--interval", "0.1")
    assert done.code == 0 and RunDetail.model_validate_json(done.out.splitlines()[-1]).output == (
        "paid"
    )


async def test_watch_json_prints_a_line_per_change_then_the_run(
    cli_env: Cli, tmp_path: Path
) -> None:
    await cli_env.ok("definitions", "push", write(tmp_path, "fanout.json", fanout("quick", 0)))
    await cli_env.ok("runs", "start", "quick", "--key", "j-1")
    watched = await cli_env("runs", "watch", "quick/j-1", "--json", "--interval", "0.05")
    assert watched.code == 0, watched
    *changes, last = watched.out.splitlines()
    traces = [RunTrace.model_validate_json(line) for line in changes]
    assert traces and all(t.id == "quick/j-1" for t in traces)
    states = [t.model_dump(exclude={"duration"}) for t in traces]
    assert all(a != b for a, b in itertools.pairwise(states)), "a line per change"
    assert [s.status for s in traces[-1].steps] == ["succeeded"] * 3
    items = traces[-1].steps[1]
    assert (items.items_total, items.items_done, items.items_failed) == (6, 6, None)
    run = RunDetail.model_validate_json(last)
    assert (run.status, run.output) == ("completed", "paid")

    missing = await cli_env("runs", "watch", "quick/nope", "--json")
    assert missing.code == 2 and "Not found (404)" in missing.err and missing.out == ""


def test_a_frame_fits_the_terminal() -> None:
    steps = [
        StepTrace(step=f"step_{i}", kind="http", status="failed", attempts=3, error="x" * 300)
        for i in range(50)
    ]
    trace = RunTrace(id="big/run-1", definition="big", version=4, status="running", steps=steps)
    plain = frame(trace, datetime.now(UTC), width=60, height=12)
    assert len(plain) == 11 and all(len(line) < 60 for line in plain)
    assert plain[-1] == "... and 42 more steps (widen the terminal)"
    colored = frame(trace, datetime.now(UTC), width=60, height=12, color=True)
    assert [click.unstyle(line) for line in colored] == plain
    assert "\x1b[" in colored[2] and "\x1b[" not in colored[1]  # the status cells only


async def test_watch_stops_quietly_when_its_reader_goes_away(cli_env: Cli, tmp_path: Path) -> None:
    waiting = {
        "name": "approval",
        "steps": {"approve": {"uses": "wait", "with": {"event": "approved", "timeout": "5m"}}},
    }
    await cli_env.ok("definitions", "push", write(tmp_path, "w.json", waiting))
    await cli_env.ok("runs", "start", "approval", "--key", "r")
    env = {**os.environ, "DAGFLOW_API_URL": cli_env.url, "DAGFLOW_API_KEY": cli_env.key}
    read_end, write_end = os.pipe()
    watch = await asyncio.create_subprocess_exec(
        DAGFLOW, "runs", "watch", "approval/r", "--json", "--interval", "0.1",
        stdout=write_end, stderr=asyncio.subprocess.PIPE, env=env, cwd=tmp_path,
    )  # fmt: skip
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:  # like `| head -1`: one line, then gone
        first = await asyncio.wait_for(asyncio.to_thread(reader.readline), 30)
    assert RunTrace.model_validate_json(first).id == "approval/r"
    await cli_env.ok("runs", "send", "approval/r", "approved")  # a change to write
    assert watch.stderr is not None
    err = await asyncio.wait_for(watch.stderr.read(), 30)
    assert await watch.wait() == 1, err
    assert b"Traceback" not in err and b"cannot reach" not in err


async def test_watch_keeps_watching_through_a_service_that_answers_503(tmp_path: Path) -> None:
    """A restarting service or a 503 from Temporal does not end a watch; the run does."""
    trace = RunTrace(id="d/k", definition="d", version=1, status=RunStatus.COMPLETED, steps=[])
    detail = RunDetail(
        id="d/k", definition="d", key="k", version=1, status=RunStatus.COMPLETED,
        workflow_id="t/d/k", output={"ok": True}, steps=[],
    )  # fmt: skip
    asked: list[int] = []

    async def trace_route(request: web.Request) -> web.Response:
        asked.append(1)
        if len(asked) <= 2:
            problem = {"title": "Service unavailable", "status": 503, "detail": "Temporal"}
            return web.json_response(problem, status=503, headers={"Retry-After": "1"})
        return web.json_response(text=trace.model_dump_json())

    async def run_route(request: web.Request) -> web.Response:
        return web.json_response(text=detail.model_dump_json())

    app = web.Application()
    app.router.add_get("/v1/runs/d/k/trace", trace_route)
    app.router.add_get("/v1/runs/d/k", run_route)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("")).rstrip("/")
        async with DagflowClient(url, "key") as client:
            seen: list[RunTrace] = []
            ended = await follow(client, "d/k", 0.05, seen.append)
    assert len(asked) == 3 and seen == [trace]
    assert ended == detail
