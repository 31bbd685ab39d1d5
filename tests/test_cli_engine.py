"""`dagflow run`, `dagflow worker` and `dagflow dev` as a person runs them: real processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from starter import devstack
from starter.client import DagflowClient
from starter.commands.engine import EXAMPLES
from tests.engine import eventually
from tests.starter import INSTANCE_KEY, Databases, running, service_settings
from worker.main import http_client, make_worker
from worker.settings import Settings

DAGFLOW = str(Path(sys.executable).parent / "dagflow")


async def dagflow(
    *args: str, env: dict[str, str] | None = None, within: float = 120
) -> tuple[int, str, str]:
    """Run the `dagflow` console script without blocking the test's event loop."""
    proc = await asyncio.create_subprocess_exec(
        DAGFLOW,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def write(folder: Path, name: str, definition: dict[str, Any]) -> Path:
    path = folder / name
    path.write_text(json.dumps(definition))
    return path


ORDER = {
    "name": "cli-order",
    "input": {
        "type": "object",
        "required": ["qty"],
        "properties": {"qty": {"type": "integer", "minimum": 1}},
    },
    "steps": {
        "price": {"uses": "transform", "with": {"value": "${{ input.qty * 5 }}"}},
        "label": {"uses": "shout", "with": {"text": "order of ${{ input.qty }}"}},
        "total": {
            "uses": "workflow",
            "needs": ["price", "label"],
            "with": {"definition": "cli-tax@2", "input": {"amount": "${{ steps.price.output }}"}},
        },
    },
    "output": "${{ steps.total.output }}",
}
TAX = {
    "name": "cli-tax",
    "steps": {"add": {"uses": "transform", "with": {"value": "${{ input.amount + 1 }}"}}},
    "output": "${{ steps.add.output }}",
}


@pytest.fixture
async def queue(client: Client) -> AsyncIterator[str]:
    """A worker built like `dagflow worker` (built-in kinds and installed plugins)."""
    settings = Settings(task_queue=f"tq-{uuid.uuid4()}")
    http = http_client(settings)
    async with make_worker(client, settings, http) as worker:
        yield worker.task_queue
    await http.close()


async def test_run_wait_json_completes_with_child_from_the_same_folder(
    tmp_path: Path, temporal_address: str, queue: str
) -> None:
    order = write(tmp_path, "order.json", ORDER)
    write(tmp_path, "tax.json", TAX)
    code, out, err = await dagflow(
        "run", str(order), "--input", '{"qty": 3}', "--wait", "--json",
        "--address", temporal_address, "--task-queue", queue, "--tenant", "cli",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["status"] == "completed"
    assert report["output"] == 16
    assert report["workflow_id"].startswith("cli/cli-order/")
    assert report["error"] is None and report["run_id"]


async def test_run_same_id_returns_the_same_run(
    tmp_path: Path, temporal_address: str, queue: str, client: Client
) -> None:
    order = write(tmp_path, "order.json", ORDER)
    write(tmp_path, "tax.json", TAX)
    key = uuid.uuid4().hex
    args = ["run", str(order), "--input", '{"qty": 1}', "--id", key]
    args += ["--address", temporal_address, "--task-queue", queue]
    first = await dagflow(*args)
    second = await dagflow(*args, "--wait", "--json")
    assert first[0] == 0 and first[1].strip() == f"default/cli-order/{key}"
    assert second[0] == 0, second[2]
    assert json.loads(second[1])["workflow_id"] == f"default/cli-order/{key}"
    runs = [w async for w in client.list_workflows(f'WorkflowId = "default/cli-order/{key}"')]
    assert len(runs) <= 1


async def test_run_failure_exits_1_naming_the_step(
    tmp_path: Path, temporal_address: str, queue: str
) -> None:
    charge = {"uses": "flaky", "with": {"failures": 9}, "retry": {"backoff": "none"}}
    path = write(tmp_path, "bad.json", {"name": "cli-bad", "steps": {"charge": charge}})
    code, out, err = await dagflow(
        "run", str(path), "--wait", "--address", temporal_address, "--task-queue", queue
    )
    assert code == 1
    assert "step 'charge' failed: FlakyError: attempt 1 failed on purpose" in err
    code, out, _ = await dagflow(
        "run", str(path), "--wait", "--json", "--address", temporal_address, "--task-queue", queue
    )
    assert code == 1
    assert json.loads(out)["status"] == "failed"


async def test_run_bad_input_exits_2(tmp_path: Path, temporal_address: str) -> None:
    order = write(tmp_path, "order.json", ORDER)
    write(tmp_path, "tax.json", TAX)
    code, _, err = await dagflow(
        "run", str(order), "--input", "{qty: 1", "--address", temporal_address
    )
    assert code == 2 and "--input: not JSON" in err
    code, _, err = await dagflow(
        "run", str(order), "--input", '{"qty": 0}', "--address", temporal_address
    )
    assert code == 2 and "input.qty: 0 is less than the minimum of 1" in err
    broken = write(
        tmp_path, "broken.json", {"name": "x", "steps": {"a": {"uses": "shout", "needs": ["fech"]}}}
    )
    code, _, err = await dagflow("run", str(broken), "--address", temporal_address)
    assert code == 2 and "steps.a.needs[0]" in err and "Traceback" not in err
    code, _, err = await dagflow("run", str(tmp_path / "missing.yaml"))
    assert code == 2 and "cannot read" in err
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    alone = write(lonely, "order.json", ORDER)
    code, _, err = await dagflow("run", str(alone), "--input", '{"qty": 1}')
    assert code == 2 and "no definition named 'cli-tax'" in err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_run_cannot_reach_temporal_exits_3(tmp_path: Path) -> None:
    path = write(tmp_path, "t.json", TAX)
    code, _, err = await dagflow("run", str(path), "--address", f"127.0.0.1:{free_port()}")
    assert code == 3
    assert "cannot reach Temporal" in err and "Traceback" not in err


async def test_worker_process_runs_dags_and_stops_on_sigterm(
    tmp_path: Path, temporal_address: str, client: Client
) -> None:
    queue = f"tq-{uuid.uuid4()}"
    proc = await asyncio.create_subprocess_exec(
        DAGFLOW, "worker", "--address", temporal_address, "--task-queue", queue,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        path = write(tmp_path, "t.json", TAX)
        code, out, err = await dagflow(
            "run", str(path), "--input", '{"amount": 41}', "--wait",
            "--address", temporal_address, "--task-queue", queue,
        )  # fmt: skip
        assert code == 0, err
        assert json.loads(out) == 42
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0
    assert proc.stdout is not None
    log = (await proc.stdout.read()).decode()
    assert "shutting down" in log


# --- dagflow dev -------------------------------------------------------------------------------


def dev_ports() -> list[str]:
    """`dagflow dev` flags for four free ports."""
    flags = ["--port", "--ui-port", "--api-port", "--demo-port"]
    return [arg for flag in flags for arg in (flag, str(free_port()))]


def processes_using(path: Path) -> list[str]:
    """Command lines of live processes that name ``path``: the data folder (`dagflow dev` and
    the temporal dev server it starts), or the temporal database (only the dev server)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(path) in cmdline and state != "Z":
            found.append(cmdline)
    return found


def printed(out: str, label: str) -> str:
    """The value `dagflow dev` printed after ``label`` (the first word of that line)."""
    match = re.search(rf"^{re.escape(label)}\s+(\S+)", out, re.M)
    assert match, f"no {label!r} line in:\n{out}"
    return match.group(1)


async def test_dev_once_starts_the_stack_runs_an_example_through_the_starter_and_stops(
    tmp_path: Path,
) -> None:
    data = tmp_path / "d"
    ports = dev_ports()
    code, out, err = await dagflow("dev", "--once", *ports, "--data-dir", str(data), within=180)
    assert code == 0, err
    port, ui, api, demo = ports[1::2]
    assert printed(out, "Temporal") == f"127.0.0.1:{port}"
    assert printed(out, "Web UI") == f"http://127.0.0.1:{ui}"
    assert printed(out, "API") == f"http://127.0.0.1:{api}/v1"
    assert printed(out, "OpenAPI") == f"http://127.0.0.1:{api}/v1/openapi.json"
    assert printed(out, "Credentials") == str(data / "credentials.json")
    assert printed(out, "Demo shop") == f"http://127.0.0.1:{demo}/shop"
    assert "Definitions  6 examples in tenant demo (new: daily-close v1," in out
    assert '"outcome": "fulfilled"' in out and '"approved_by": {' in out
    link = f"http://127.0.0.1:{ui}/namespaces/default/workflows/demo%2Forder-fulfilment%2F"
    assert f"See it in the Web UI: {link}" in out
    assert (data / "temporal.db").exists() and (data / "dagflow.db").exists()
    credentials = data / "credentials.json"
    assert credentials.stat().st_mode & 0o777 == 0o600
    stored = json.loads(credentials.read_text())
    assert stored["api_url"] == f"http://127.0.0.1:{api}" and stored["tenant"] == "demo"
    assert stored["api_key"].startswith("dfk_")
    assert (data / "secrets.json").stat().st_mode & 0o777 == 0o600
    assert processes_using(data) == []


async def test_dev_restart_keeps_key_and_definitions_serves_the_api_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    data = tmp_path / "d"
    code, _, err = await dagflow("dev", "--once", *dev_ports(), "--data-dir", str(data), within=180)
    assert code == 0, err
    first_key = json.loads((data / "credentials.json").read_text())["api_key"]

    proc = await asyncio.create_subprocess_exec(
        DAGFLOW, "dev", *dev_ports(), "--data-dir", str(data),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    out = ""
    try:
        while "The stack is up" not in out:
            line = await asyncio.wait_for(proc.stdout.readline(), 180)
            assert line, f"dagflow dev ended early:\n{out}{(await proc.stderr.read()).decode()}"
            out += line.decode()
        assert "Definitions  6 examples in tenant demo (unchanged)" in out
        assert '"outcome": "fulfilled"' in out
        stored = json.loads((data / "credentials.json").read_text())
        assert stored["api_key"] == first_key, "a restart keeps the key that still works"
        assert processes_using(data / "temporal.db"), "the temporal dev server runs"
        async with DagflowClient(stored["api_url"], stored["api_key"]) as demo:
            names = [d.name async for d in demo.definitions.iterate()]
            assert names == [
                "daily-close", "etl-orders", "ledger-sync", "order-fulfilment",
                "shipping-quote", "webhook-fanout",
            ]  # fmt: skip
            assert (await demo.definitions.get("order-fulfilment")).current_version == 1
            runs = [r async for r in demo.runs.iterate(definition="order-fulfilment")]
            assert len(runs) == 2 and {r.status for r in runs} == {"completed"}
            assert (await demo.openapi())["openapi"].startswith("3.1")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
    assert proc.returncode == 0, (await proc.stderr.read()).decode()
    assert processes_using(data) == [], "everything dagflow dev started has stopped"


async def test_dev_stops_what_it_started_when_signalled_during_start_up(tmp_path: Path) -> None:
    data = tmp_path / "d"
    proc = await asyncio.create_subprocess_exec(
        DAGFLOW, "dev", *dev_ports(), "--data-dir", str(data),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip

    async def temporal_started() -> bool:
        return bool(processes_using(data / "temporal.db"))

    try:
        await eventually(temporal_started, within=120)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    assert processes_using(data) == []


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's prctl")
async def test_dev_killed_outright_leaves_no_temporal_server(tmp_path: Path) -> None:
    data = tmp_path / "d"
    proc = await asyncio.create_subprocess_exec(
        DAGFLOW, "dev", *dev_ports(), "--data-dir", str(data),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip

    async def temporal_started() -> bool:
        return bool(processes_using(data / "temporal.db"))

    async def temporal_gone() -> bool:
        return not processes_using(data / "temporal.db")

    try:
        await eventually(temporal_started, within=120)
    finally:
        proc.kill()  # SIGKILL: dagflow dev cannot stop anything itself
        await proc.wait()
    await eventually(temporal_gone, within=30)


async def test_dev_refuses_ports_in_use_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = str(taken.getsockname()[1])
        for flag in ("--port", "--api-port", "--demo-port"):
            ports = dev_ports()
            ports[ports.index(flag) + 1] = busy
            data = tmp_path / flag.strip("-")
            code, out, err = await dagflow("dev", "--once", *ports, "--data-dir", str(data))
            assert code == 2, (flag, out, err)
            assert f"port {busy} on 127.0.0.1 is already in use ({flag})" in err
            assert "Traceback" not in err and out == ""
            assert not data.exists(), "nothing started, nothing written"
    ports = dev_ports()
    ports[ports.index("--api-port") + 1] = ports[ports.index("--port") + 1]
    code, _, err = await dagflow("dev", "--once", *ports, "--data-dir", str(tmp_path / "twice"))
    assert code == 2 and "--api-port" in err and "is also --port" in err


async def test_dev_keeps_a_working_key_replaces_a_dead_one_and_versions_changed_examples(
    tmp_path: Path, temporal_address: str
) -> None:
    database = await Databases("sqlite", tmp_path).fresh()
    async with running(service_settings(database, temporal_address)) as service:
        first = await devstack.demo_tenant(service.base_url, INSTANCE_KEY, tmp_path)
        again = await devstack.demo_tenant(service.base_url, INSTANCE_KEY, tmp_path)
        assert again == first and first.tenant == "demo"
        dead = {**first.as_json(), "api_key": "dfk_deadbeef_" + "x" * 32}
        (tmp_path / "credentials.json").write_text(json.dumps(dead))
        fresh = await devstack.demo_tenant(service.base_url, INSTANCE_KEY, tmp_path)
        assert fresh.api_key not in (first.api_key, dead["api_key"])
        assert json.loads((tmp_path / "credentials.json").read_text()) == fresh.as_json()

        folder = tmp_path / "examples"
        folder.mkdir()
        for name in ("etl-orders.yaml", "ledger-sync.yaml"):
            (folder / name).write_text((EXAMPLES / name).read_text())
        files = sorted(folder.iterdir())
        tenant = service.client(fresh.api_key)
        assert await devstack.load_definitions(tenant, files) == [
            devstack.Loaded("etl-orders", 1, True), devstack.Loaded("ledger-sync", 1, True),
        ]  # fmt: skip
        assert await devstack.load_definitions(tenant, files) == [
            devstack.Loaded("etl-orders", 1, False), devstack.Loaded("ledger-sync", 1, False),
        ]  # fmt: skip
        edited = files[0].read_text().replace("description: ", "description: (edited) ", 1)
        files[0].write_text(edited)
        assert await devstack.load_definitions(tenant, files) == [
            devstack.Loaded("etl-orders", 2, True), devstack.Loaded("ledger-sync", 1, False),
        ]  # fmt: skip
