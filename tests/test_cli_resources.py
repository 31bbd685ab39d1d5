"""The `dagflow` resource commands as people and scripts run them: the real console script,
as a subprocess, against a running starter service (SQLite) with a real worker."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from temporalio.client import Client

from starter.api import (
    Action,
    Binding,
    Command,
    DefinitionDetail,
    DefinitionSummary,
    Key,
    NewKey,
    Page,
    RunDetail,
    RunRef,
    RunSummary,
    RunTrace,
    StepErrors,
    Tenant,
    Validation,
    Version,
)
from starter.cli import cli
from tests.engine import dag_worker
from tests.starter import INSTANCE_KEY, Databases, Starter, running, service_settings
from tests.steps import Probe

DAGFLOW = str(Path(sys.executable).parent / "dagflow")


@dataclass
class Result:
    """What one `dagflow` process did."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines()]


@dataclass
class Cli:
    """Runs `dagflow` with the service's URL and a tenant's key in its environment."""

    url: str
    key: str
    cwd: Path
    tenant: str
    probe: Probe

    async def __call__(
        self, *args: str, key: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        variables = {k: v for k, v in os.environ.items() if not k.startswith("DAGFLOW_")}
        variables |= {"DAGFLOW_API_URL": self.url, "DAGFLOW_API_KEY": key or self.key}
        variables |= env or {}
        return await dagflow(*args, env=variables, cwd=self.cwd)

    async def ok(self, *args: str, key: str | None = None) -> Result:
        """Run and expect exit 0."""
        result = await self(*args, key=key)
        assert result.code == 0, (args, result)
        return result

    async def admin(self, *args: str) -> Result:
        """Run with the instance key."""
        return await self(*args, key=INSTANCE_KEY)


async def dagflow(*args: str, env: dict[str, str], cwd: Path, within: float = 90) -> Result:
    """The console script as a subprocess, without blocking the event loop (the service and
    the worker run on it)."""
    proc = await asyncio.create_subprocess_exec(
        DAGFLOW,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def write(folder: Path, name: str, data: Any) -> str:
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


@pytest.fixture(scope="module")
def sqlite(tmp_path_factory: pytest.TempPathFactory) -> Databases:
    """SQLite only: the CLI goes through the service, whose stores have their own tests."""
    return Databases("sqlite", tmp_path_factory.mktemp("cli-db"))


@pytest.fixture(scope="module")
async def service(sqlite: Databases, temporal_address: str) -> AsyncIterator[Starter]:
    """One starter service for the module's tests (each test has its own tenant)."""
    settings = service_settings(
        await sqlite.fresh(), temporal_address, task_queue=f"tq-{uuid.uuid4()}"
    )
    async with running(settings) as starter:
        yield starter


@asynccontextmanager
async def tenant_cli(
    service: Starter, client: Client, cwd: Path, activities: Sequence[Any], probe: Probe
) -> AsyncIterator[Cli]:
    """A new tenant with a key, and a worker of ``activities`` on the service's task queue."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    tenant_client = await service.tenant(tenant)
    assert tenant_client.api_key is not None
    async with dag_worker(client, activities, task_queue=service.settings.task_queue):
        yield Cli(service.base_url, tenant_client.api_key, cwd, tenant, probe)


@pytest.fixture
async def cli_env(service: Starter, client: Client, tmp_path: Path) -> AsyncIterator[Cli]:
    """A new tenant, and a worker whose test steps (``flaky``, ...) count their calls in a
    fresh probe."""
    probe = Probe()
    async with tenant_cli(service, client, tmp_path, probe.activities(), probe) as cli:
        yield cli


def flaky(value: Any = "ok", fail_times: int = 0, **extra: Any) -> dict[str, Any]:
    """A test step that fails ``fail_times`` times (per step key, in this test), then
    outputs ``value``."""
    return {
        "uses": "flaky",
        "with": {"value": value, "fail_times": fail_times},
        "retry": {"max_attempts": 1},
        **extra,
    }


SIMPLE = {
    "name": "simple",
    "description": "two steps",
    "input": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
    "steps": {
        "first": flaky("one"),
        "second": {"needs": ["first"], "uses": "transform", "with": {"value": "${{ input.n }}"}},
    },
    "output": "${{ [steps.first.output, steps.second.output] }}",
}


def parked(name: str, fail_times: int) -> dict[str, Any]:
    """``first`` succeeds, then ``charge`` fails ``fail_times`` times and parks."""
    return {
        "name": name,
        "steps": {
            "first": flaky("one"),
            "charge": flaky("charged", fail_times, needs=["first"], on_error="manual"),
        },
        "output": "${{ steps.charge.output }}",
    }


# --- help --------------------------------------------------------------------------------------


def walk(command: click.Command, parent: click.Context | None = None) -> Iterator[click.Context]:
    """A context for every command of the tree, groups included."""
    name = "dagflow" if parent is None else command.name
    ctx = click.Context(command, info_name=name, parent=parent)
    yield ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            yield from walk(sub, ctx)


def test_every_command_has_a_one_line_description_and_an_example() -> None:
    contexts = list(walk(cli))
    paths = {ctx.command_path for ctx in contexts}
    for group in ("definitions", "runs", "commands", "bindings", "tenants", "keys"):
        assert f"dagflow {group}" in paths
    for verb in ("push", "list", "show", "versions", "rollback", "validate"):
        assert f"dagflow definitions {verb}" in paths
    runs = "start list show watch trace retry complete skip fail send cancel rerun errors"
    assert {f"dagflow runs {verb}" for verb in runs.split()} <= paths
    for ctx in contexts:
        command = ctx.command
        assert command.get_short_help_str(limit=200), f"{ctx.command_path} has no description"
        text = command.get_help(ctx)
        assert "Example" in text, f"{ctx.command_path} --help has no Example"
        example = text[text.index("Example") :].splitlines()
        assert "dagflow " in example[1], f"{ctx.command_path}: {example[:2]} (\\b kept lines?)"


def test_the_exit_codes_are_the_engine_commands_ones() -> None:
    from starter.commands import engine, exits

    assert (exits.OK, exits.RUN_FAILED, exits.BAD_INPUT, exits.UNREACHABLE) == (0, 1, 2, 3)
    assert (engine.OK, engine.RUN_FAILED, engine.BAD_INPUT, engine.UNREACHABLE) == (0, 1, 2, 3)


# --- definitions -------------------------------------------------------------------------------


async def test_definitions_push_list_show_versions_rollback(cli_env: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "simple.json", SIMPLE)
    first = await cli_env.ok("definitions", "push", path)
    assert first.out.strip() == "simple: version 1 stored and current"
    again = await cli_env.ok("definitions", "push", path)
    assert again.out.strip() == "simple: unchanged, version 1 is current"
    two = {**SIMPLE, "description": "two steps, again"}
    yaml_path = write(tmp_path, "simple.yaml", json.dumps(two))
    pushed = DefinitionDetail.model_validate_json(
        (await cli_env.ok("definitions", "push", yaml_path, "--json")).out
    )
    assert (pushed.name, pushed.current_version, pushed.created) == ("simple", 2, True)

    listed = Page[DefinitionSummary].model_validate_json(
        (await cli_env.ok("definitions", "list", "--scope", "tenant", "--json")).out
    )
    assert [(d.name, d.current_version, d.scope) for d in listed.items] == [("simple", 2, "tenant")]
    table = (await cli_env.ok("definitions", "list", "--prefix", "sim")).out.splitlines()
    assert table[0].split() == [
        "NAME", "VERSION", "SCOPE", "ACTIVE", "TEMPLATE", "UPDATED", "DESCRIPTION",
    ]  # fmt: skip
    assert table[1].split()[:5] == ["simple", "2", "tenant", "yes", "no"]
    assert table[1].endswith("two steps, again")

    shown = (await cli_env.ok("definitions", "show", "simple")).out
    assert "current      version 2" in shown and "description  two steps, again" in shown
    assert "\nsteps:\n  first:\n    uses: flaky\n" in shown
    old = Version.model_validate_json(
        (await cli_env.ok("definitions", "show", "simple", "--version", "1", "--json")).out
    )
    assert (old.version, old.content["description"]) == (1, "two steps")

    versions = (await cli_env.ok("definitions", "versions", "simple")).out.splitlines()
    assert versions[0].split() == ["VERSION", "CREATED", "AUTHOR", "SHA256"]
    assert versions[1].startswith("2 *") and versions[2].startswith("1   ")
    assert len(versions) == 3

    back = await cli_env.ok("definitions", "rollback", "simple", "1")
    assert back.out.strip() == "simple: version 1 is current"
    current = DefinitionDetail.model_validate_json(
        (await cli_env.ok("definitions", "show", "simple", "--json")).out
    )
    assert (current.current_version, current.version.version) == (1, 1)

    assert (await cli_env.ok("definitions", "deactivate", "simple")).out.strip() == (
        "simple: deactivated"
    )
    refused = await cli_env("runs", "start", "simple", "--input", '{"n": 1}')
    assert refused.code == 2 and "Conflict (409)" in refused.err and "deactivated" in refused.err
    assert (await cli_env.ok("definitions", "activate", "simple")).out.strip() == "simple: active"

    missing = await cli_env("definitions", "show", "nothing-here")
    assert missing.code == 2 and missing.out == ""
    assert missing.err.startswith("error: Not found (404)") and "Traceback" not in missing.err


async def test_definitions_validate_asks_the_service_and_push_reports_every_problem(
    cli_env: Cli, tmp_path: Path
) -> None:
    good = write(tmp_path, "good.json", SIMPLE)
    ok = await cli_env.ok("definitions", "validate", good)
    assert ok.out.strip() == f"{good}: ok"
    as_json = Validation.model_validate_json(
        (await cli_env.ok("definitions", "validate", good, "--json")).out
    )
    assert as_json.ok and as_json.problems == []

    broken = {
        "name": "broken",
        "steps": {
            "a": {"uses": "no-such-kind"},
            "b": {"uses": "transform", "needs": ["nowhere"], "with": {"value": 1}},
        },
    }
    bad = write(tmp_path, "bad.json", broken)
    invalid = await cli_env("definitions", "validate", bad)
    assert invalid.code == 2 and invalid.out == ""
    problems = invalid.err.splitlines()
    assert any(line.startswith(f"{bad}: steps.a.uses: ") for line in problems), problems
    assert any(line.startswith(f"{bad}: steps.b.needs") for line in problems), problems
    report = await cli_env("definitions", "validate", bad, "--json")
    assert report.code == 2 and not Validation.model_validate_json(report.out).ok

    pushed = await cli_env("definitions", "push", bad)
    assert pushed.code == 2 and pushed.out == ""
    lines = pushed.err.splitlines()
    assert lines[0].startswith("error: Invalid request (422)")
    assert any(line.startswith("  steps.a.uses: ") for line in lines), lines
    assert any(line.startswith("  steps.b.needs") for line in lines), lines
    listed = await cli_env.ok("definitions", "list", "--scope", "tenant", "--json")
    assert Page[DefinitionSummary].model_validate_json(listed.out).items == []

    unreadable = await cli_env("definitions", "push", str(tmp_path / "missing.yaml"))
    assert unreadable.code == 2 and "cannot read" in unreadable.err


# --- runs --------------------------------------------------------------------------------------


async def test_runs_start_list_show_trace(cli_env: Cli, tmp_path: Path) -> None:
    await cli_env.ok("definitions", "push", write(tmp_path, "simple.json", SIMPLE))
    waited = await cli_env.ok(
        "runs", "start", "simple", "--input", '{"n": 7}', "--key", "k-1", "--wait", "--json"
    )
    done = RunDetail.model_validate_json(waited.out)
    assert (done.id, done.status, done.output) == ("simple/k-1", "completed", ["one", 7])
    plain = await cli_env.ok("runs", "start", "simple", "--input", '{"n": 8}', "--wait")
    assert plain.out == '["one", 8]\n'
    input_file = write(tmp_path, "input.json", {"n": 3})
    started = await cli_env.ok("runs", "start", "simple", "--input", f"@{input_file}")
    run = started.out.strip()
    assert run.startswith("simple/") and started.err == ""
    repeat = await cli_env.ok("runs", "start", "simple", "--input", '{"n": 7}', "--key", "k-1")
    assert repeat.out.strip() == "simple/k-1" and "started before" in repeat.err
    ref = RunRef.model_validate_json(
        (await cli_env.ok("runs", "start", "simple", "--input", '{"n": 1}', "--json")).out
    )
    assert ref.created and ref.version == 1 and ref.workflow_id == f"{cli_env.tenant}/{ref.id}"

    async def all_listed() -> Page[RunSummary] | None:
        page = Page[RunSummary].model_validate_json(
            (await cli_env.ok("runs", "list", "--json", "--definition", "simple")).out
        )
        return page if len(page.items) == 4 else None

    page = await eventually(all_listed)
    assert {r.id for r in page.items} >= {"simple/k-1", run, ref.id}
    table = (await cli_env.ok("runs", "list", "--since", "1h")).out.splitlines()
    assert table[0].split() == ["RUN", "STATUS", "VERSION", "STARTED", "DURATION", "COMMAND"]
    assert any(line.startswith("simple/k-1 ") and " completed " in line for line in table)
    bad_since = await cli_env("runs", "list", "--since", "yesterday-ish")
    assert bad_since.code == 2 and "--since" in bad_since.err

    shown = (await cli_env.ok("runs", "show", "simple/k-1")).out
    assert "status      completed" in shown and 'output      ["one", 7]' in shown
    assert 'input       {"n": 7}' in shown
    steps = shown[shown.index("STEP") :].splitlines()
    assert steps[0].split() == ["STEP", "KIND", "STATUS", "ATTEMPTS", "ERROR"]
    assert [line.split() for line in steps[1:]] == [
        ["first", "flaky", "succeeded", "1"],
        ["second", "transform", "succeeded", "1"],
    ]
    trace = RunTrace.model_validate_json(
        (await cli_env.ok("runs", "trace", "simple/k-1", "--json")).out
    )
    assert [(s.step, s.status) for s in trace.steps] == [
        ("first", "succeeded"),
        ("second", "succeeded"),
    ]
    text = (await cli_env.ok("runs", "trace", "simple/k-1")).out.splitlines()
    assert text[0].startswith("simple/k-1  version 1  completed  started ")
    assert text[1].split()[:4] == ["STEP", "KIND", "STATUS", "ATTEMPTS"]

    missing = await cli_env("runs", "show", "simple/nope")
    assert missing.code == 2 and "Not found (404)" in missing.err and "simple/nope" in missing.err


async def test_the_input_is_checked_and_bad_json_is_refused(cli_env: Cli, tmp_path: Path) -> None:
    await cli_env.ok("definitions", "push", write(tmp_path, "simple.json", SIMPLE))
    not_json = await cli_env("runs", "start", "simple", "--input", "{n: 1")
    assert not_json.code == 2 and not_json.err.startswith("--input: not JSON")
    wrong = await cli_env("runs", "start", "simple", "--input", '{"n": "seven", "m": 1}')
    assert wrong.code == 2 and wrong.out == ""
    lines = wrong.err.splitlines()
    assert lines[0].startswith("error: Invalid request (422)")
    assert "  input.n: 'seven' is not of type 'integer'" in lines
    no_file = await cli_env("runs", "start", "simple", "--input", "@/nonexistent/input.json")
    assert no_file.code == 2 and "cannot read /nonexistent/input.json" in no_file.err
    bad_flag = await cli_env("runs", "start", "simple", "--no-such-flag")
    assert bad_flag.code == 2 and "No such option" in bad_flag.err


async def test_a_failed_run_exits_1_and_shows_in_errors_then_reruns(
    cli_env: Cli, tmp_path: Path
) -> None:
    failing = {
        "name": "failing",
        "steps": {"first": flaky("one"), "charge": flaky("paid", 1, needs=["first"])},
        "output": "${{ steps.charge.output }}",
    }
    await cli_env.ok("definitions", "push", write(tmp_path, "failing.json", failing))
    failed = await cli_env("runs", "start", "failing", "--key", "f-1", "--wait")
    assert failed.code == 1 and failed.out == ""
    assert failed.err == "run failing/f-1 failed: step 'charge' failed: Flaky: flaky failure 1\n"
    as_json = await cli_env("runs", "show", "failing/f-1", "--json")
    assert RunDetail.model_validate_json(as_json.out).status == "failed"

    errors = StepErrors.model_validate_json((await cli_env.ok("runs", "errors", "--json")).out)
    assert [(e.run, e.step, e.status) for e in errors.items] == [
        ("failing/f-1", "charge", "failed")
    ]
    table = (await cli_env.ok("runs", "errors")).out.splitlines()
    assert table[0].split() == ["RUN", "STEP", "STATUS", "ATTEMPTS", "FINISHED", "ERROR"]
    assert table[1].startswith("failing/f-1  charge  failed") and "flaky failure 1" in table[1]

    rerun = await cli_env.ok("runs", "rerun", "failing/f-1", "--key", "f-2")
    assert rerun.out.strip() == "failing/f-2"
    watched = await cli_env("runs", "watch", "failing/f-2", "--interval", "0.1")
    assert watched.code == 0, watched
    final = watched.lines()[-1]
    assert (final["status"], final["output"]) == ("completed", "paid")
    assert cli_env.probe.calls["first"] == 1  # the rerun reused it
    again = await cli_env("runs", "rerun", "failing/f-2")
    assert again.code == 2 and "Conflict (409)" in again.err


async def test_parked_steps_are_retried_completed_and_skipped(cli_env: Cli, tmp_path: Path) -> None:
    await cli_env.ok("definitions", "push", write(tmp_path, "p.json", parked("parked", 1)))
    await cli_env.ok("runs", "start", "parked", "--key", "a")
    watched = await cli_env("runs", "watch", "parked/a", "--json", "--interval", "0.1")
    assert watched.code == 1
    final = RunDetail.model_validate_json(watched.out.splitlines()[-1])
    assert final.status == "needs_attention"
    assert [(s.step, s.status) for s in final.steps][-1] == ("charge", "needs_attention")

    not_parked = await cli_env("runs", "retry", "parked/a", "first")
    assert not_parked.code == 2 and "Conflict (409)" in not_parked.err
    unknown = await cli_env("runs", "skip", "parked/a", "nope")
    assert unknown.code == 2 and "Not found (404)" in unknown.err
    retried = await cli_env.ok("runs", "retry", "parked/a", "charge", "--with", '{"value": "x"}')
    assert retried.out.strip() == "run parked/a: step charge runs again"
    done = await cli_env("runs", "watch", "parked/a", "--json", "--interval", "0.1")
    assert done.code == 0 and done.lines()[-1]["output"] == "x"
    bad_with = await cli_env("runs", "retry", "parked/a", "charge", "--with", "[1]")
    assert bad_with.code == 2 and "--with: expected a JSON object" in bad_with.err

    await cli_env.ok("definitions", "push", write(tmp_path, "q.json", parked("stuck", 99)))
    for key in ("c", "s"):
        await cli_env.ok("runs", "start", "stuck", "--key", key)
        assert (await cli_env("runs", "watch", f"stuck/{key}", "--interval", "0.1")).code == 1
    completed = await cli_env.ok(
        "runs", "complete", "stuck/c", "charge", "--output", '{"paid": true}', "--json"
    )
    assert Action.model_validate_json(completed.out).action == "complete"
    skipped = await cli_env.ok("runs", "skip", "stuck/s", "charge")
    assert skipped.out.strip() == "run stuck/s: step charge skipped"
    c = await cli_env("runs", "watch", "stuck/c", "--interval", "0.1")
    s = await cli_env("runs", "watch", "stuck/s", "--interval", "0.1")
    assert (c.code, c.lines()[-1]["output"]) == (0, {"paid": True})
    assert (s.code, s.lines()[-1]["status"]) == (0, "completed")


async def test_start_wait_says_what_to_do_about_a_parked_step_and_goes_on_waiting(
    cli_env: Cli, tmp_path: Path
) -> None:
    await cli_env.ok("definitions", "push", write(tmp_path, "p.json", parked("parked", 1)))
    await cli_env.ok("runs", "start", "parked", "--key", "w")  # then --wait finds it by key
    waiting = asyncio.create_task(
        cli_env("runs", "start", "parked", "--key", "w", "--wait", "--interval", "0.1")
    )
    parked_now = await cli_env("runs", "watch", "parked/w", "--interval", "0.1")
    assert (parked_now.code, parked_now.lines()[-1]["status"]) == (1, "needs_attention")
    assert not waiting.done()
    await cli_env.ok("runs", "retry", "parked/w", "charge")
    done = await waiting
    assert (done.code, done.out) == (0, '"charged"\n')
    assert done.err.startswith("run parked/w needs attention: step charge failed after 1 attempt")
    assert "  dagflow runs retry parked/w charge  " in done.err


async def test_events_cancel_and_fail(cli_env: Cli, tmp_path: Path) -> None:
    waiting = {
        "name": "approval",
        "steps": {"approve": {"uses": "wait", "with": {"event": "approved", "timeout": "5m"}}},
        "output": "${{ steps.approve.output }}",
    }
    await cli_env.ok("definitions", "push", write(tmp_path, "w.json", waiting))
    for key in ("sent", "cancelled", "failed"):
        await cli_env.ok("runs", "start", "approval", "--key", key)

    async def waiting_now() -> bool | None:
        run = RunDetail.model_validate_json(
            (await cli_env.ok("runs", "show", "approval/sent", "--json")).out
        )
        return True if run.status == "waiting" else None

    await eventually(waiting_now)
    sent = await cli_env.ok(
        "runs", "send", "approval/sent", "approved", "--payload", '{"by": "ana"}'
    )
    assert sent.out.strip() == "run approval/sent: event approved delivered"
    cancelled = await cli_env.ok("runs", "cancel", "approval/cancelled", "--json")
    assert Action.model_validate_json(cancelled.out).action == "cancel"
    failed = await cli_env.ok("runs", "fail", "approval/failed", "--reason", "no longer needed")
    assert failed.out.strip() == "run approval/failed: failing"

    ok = await cli_env("runs", "watch", "approval/sent", "--interval", "0.1")
    assert (ok.code, ok.lines()[-1]["output"]) == (0, {"by": "ana"})
    gone = await cli_env("runs", "watch", "approval/cancelled", "--interval", "0.1")
    assert (gone.code, gone.lines()[-1]["status"]) == (1, "cancelled")
    stopped = await cli_env("runs", "watch", "approval/failed", "--interval", "0.1")
    assert stopped.code == 1
    assert stopped.lines()[-1]["status"] == "failed"
    assert "no longer needed" in stopped.lines()[-1]["error"]
    closed = await cli_env("runs", "cancel", "approval/failed")
    assert closed.code == 2 and "is closed" in closed.err


# --- bindings and commands ---------------------------------------------------------------------


async def test_bindings_and_commands(cli_env: Cli, tmp_path: Path) -> None:
    await cli_env.ok("definitions", "push", write(tmp_path, "simple.json", SIMPLE))
    created = Binding.model_validate_json(
        (await cli_env.ok("bindings", "create", "order.created", "simple", "--json")).out
    )
    assert (created.type, created.definition, created.scope) == (
        "order.created",
        "simple",
        "tenant",
    )
    listed = (await cli_env.ok("bindings", "list", "--type", "order.created")).out.splitlines()
    assert listed[0].split() == [
        "ID",
        "TYPE",
        "SCOPE",
        "DEFINITION",
        "VERSION",
        "POSITION",
        "CREATED",
    ]
    assert listed[1].split()[:5] == [
        str(created.id),
        "order.created",
        "tenant",
        "simple",
        "current",
    ]

    sent = await cli_env.ok(
        "commands", "send", "order.created", "--id", "order-1", "--payload", '{"n": 5}'
    )
    assert sent.out.splitlines()[0].split() == ["RUN", "VERSION", "SCOPE", "BINDING"]
    assert sent.out.splitlines()[1].split() == ["simple/order-1", "1", "tenant", str(created.id)]
    repeat = await cli_env.ok(
        "commands", "send", "order.created", "--id", "order-1", "--payload", '{"n": 5}', "--json"
    )
    command = Command.model_validate_json(repeat.out)
    assert not command.created and [r.id for r in command.runs] == ["simple/order-1"]
    page = Page[Command].model_validate_json((await cli_env.ok("commands", "list", "--json")).out)
    assert [c.id for c in page.items] == ["order-1"]
    table = (await cli_env.ok("commands", "list")).out.splitlines()
    assert table[1].split()[:3] == ["order-1", "order.created", "1"]
    shown = (await cli_env.ok("commands", "show", "order-1")).out
    assert "type     order.created" in shown and "simple/order-1" in shown
    watched = await cli_env("runs", "watch", "simple/order-1", "--interval", "0.1")
    assert watched.code == 0 and watched.lines()[-1]["output"] == ["one", 5]

    invalid = await cli_env("commands", "send", "order.created", "--payload", '{"n": "x"}')
    assert invalid.code == 2 and "  payload.n: simple: 'x' is not of type 'integer'" in invalid.err

    audit = {"name": "audit", "steps": {"log": {"uses": "transform", "with": {"value": 1}}}}
    path = write(tmp_path, "audit.json", audit)
    await cli_env.admin("definitions", "push", path, "--instance")
    everyone = Binding.model_validate_json(
        (
            await cli_env.admin(
                "bindings", "create", "order.created", "audit", "--instance", "--json"
            )
        ).out
    )
    assert everyone.scope == "instance"
    both = Page[Binding].model_validate_json((await cli_env.ok("bindings", "list", "--json")).out)
    assert [(b.scope, b.definition) for b in both.items] == [
        ("instance", "audit"),
        ("tenant", "simple"),
    ]
    refused = await cli_env("bindings", "delete", str(everyone.id))
    assert refused.code == 2 and refused.err.startswith("error: Forbidden (403)")
    deleted = await cli_env.ok("bindings", "delete", str(created.id))
    assert deleted.out.strip() == f"binding {created.id} deleted (order.created -> simple)"
    gone = await cli_env.admin("bindings", "delete", str(everyone.id), "--instance")
    assert gone.code == 0, gone
    unbound = await cli_env("commands", "send", "order.created", "--id", "order-2")
    assert unbound.code == 2 and "Not found (404)" in unbound.err


# --- tenants and keys --------------------------------------------------------------------------


async def test_tenants_and_keys_for_the_instance_admin(cli_env: Cli) -> None:
    tenant = f"acme-{uuid.uuid4().hex[:6]}"
    created = await cli_env.admin("tenants", "create", tenant, "--name", "Acme Inc.")
    assert created.out.strip() == f"tenant {tenant} (Acme Inc.) created"
    page = Page[Tenant].model_validate_json((await cli_env.admin("tenants", "list", "--json")).out)
    assert tenant in [t.id for t in page.items]
    shown = (await cli_env.admin("tenants", "show", tenant)).out
    assert f"id       {tenant}" in shown and "name     Acme Inc." in shown
    assert (await cli_env.admin("tenants", "show", "nobody")).code == 2
    as_tenant = await cli_env("tenants", "list")
    assert as_tenant.code == 2 and "Forbidden (403)" in as_tenant.err

    issued = await cli_env.admin("keys", "create", "ci", "--tenant", tenant)
    key = issued.out.strip()
    assert key.startswith("dfk_") and "not shown again" in issued.err
    mine = await cli_env.ok("definitions", "list", "--scope", "tenant", key=key)
    assert mine.err == "no definitions\n"
    keys = Page[Key].model_validate_json(
        (await cli_env.admin("keys", "list", "--tenant", tenant, "--json")).out
    )
    [listed] = keys.items
    assert (listed.name, listed.tenant, listed.revoked_at) == ("ci", tenant, None)
    assert key not in (await cli_env.admin("keys", "list", "--tenant", tenant)).out
    revoked = await cli_env.admin("keys", "revoke", listed.id, "--tenant", tenant)
    assert revoked.out.startswith(f"key {listed.id} 'ci' revoked at ")
    refused = await cli_env("definitions", "list", key=key)
    assert refused.code == 2 and refused.err.startswith("error: Unauthorized (401)")
    assert "DAGFLOW_API_KEY" in refused.err and key not in refused.out + refused.err

    instance_key = NewKey.model_validate_json(
        (await cli_env.admin("keys", "create", "ops", "--json")).out
    )
    assert instance_key.tenant is None
    assert (await cli_env.ok("tenants", "show", tenant, key=instance_key.key)).code == 0


# --- where the service is, and when it is not --------------------------------------------------


async def test_the_credentials_file_gives_the_key_for_its_url(cli_env: Cli, tmp_path: Path) -> None:
    folder = tmp_path / ".dagflow"
    folder.mkdir()
    credentials = folder / "credentials.json"
    credentials.write_text(
        json.dumps({"api_url": cli_env.url, "api_key": cli_env.key, "tenant": cli_env.tenant})
    )
    credentials.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGFLOW_")}
    listed = await dagflow("definitions", "list", "--scope", "tenant", env=env, cwd=tmp_path)
    assert (listed.code, listed.err) == (0, "no definitions\n")

    elsewhere = cli_env.url.replace("127.0.0.1", "localhost")
    other = await dagflow("definitions", "list", "--api-url", elsewhere, env=env, cwd=tmp_path)
    assert other.code == 2 and "Unauthorized (401)" in other.err
    assert "the key came from: no API key" in other.err

    credentials.chmod(0o644)
    loose = await dagflow("definitions", "list", env=env, cwd=tmp_path)
    assert loose.code == 0 and "readable by others" in loose.err
    assert cli_env.key not in loose.err + other.err

    credentials.write_text("{not json")
    broken = await dagflow("definitions", "list", env=env, cwd=tmp_path)
    assert broken.code == 2 and "is not a credentials file" in broken.err


async def test_a_service_that_does_not_answer_exits_3(
    cli_env: Cli, sqlite: Databases, tmp_path: Path
) -> None:
    down = await cli_env("runs", "list", env={"DAGFLOW_API_URL": "http://127.0.0.1:9"})
    assert down.code == 3 and down.out == ""
    assert down.err.startswith("cannot reach the dagflow service at http://127.0.0.1:9")
    assert "Traceback" not in down.err

    no_temporal = service_settings(await sqlite.fresh(), "127.0.0.1:9", temporal_timeout=0.5)
    async with running(no_temporal) as starter:
        tenant = await starter.tenant()
        assert tenant.api_key is not None
        unavailable = await cli_env(
            "runs", "list", key=tenant.api_key, env={"DAGFLOW_API_URL": starter.base_url}
        )
    assert unavailable.code == 3
    assert unavailable.err.startswith("error: Service unavailable (503)"), unavailable.err
    assert "Traceback" not in unavailable.err


async def eventually(check: Any, within: float = 30.0) -> Any:
    """Poll ``check`` until it returns something (visibility lags behind runs)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        found = await check()
        if found is not None:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.2)
