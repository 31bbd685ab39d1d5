"""``dagflow worker`` and ``dagflow run`` (the engine without the starter), and ``dagflow dev``
(the whole stack on one machine)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import ValidationError
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.exceptions import TimeoutError as RunTimeoutError
from temporalio.service import RPCError

from starter.commands.exits import BAD_INPUT as BAD_INPUT  # re-exported: the shared codes
from starter.commands.exits import OK as OK
from starter.commands.exits import RUN_FAILED as RUN_FAILED
from starter.commands.exits import UNREACHABLE as UNREACHABLE
from starter.commands.exits import fail as fail
from starter.devserver import PortInUseError, start_dev_server
from starter.files import (
    SUFFIXES,
    DefinitionFileError,
    known_kinds,
    read_definition,
    resolve_library,
)
from starter.inputs import input_problems
from starter.launch import start_run
from worker.client import connect
from worker.main import run_worker
from worker.metrics import MetricsAddressError
from worker.payloads import TOO_LARGE, too_large
from worker.settings import Settings
from workflows.definition import Definition

if TYPE_CHECKING:
    from starter.client import DagflowClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

F = TypeVar("F", bound=Callable[..., Any])


def temporal_options(fn: F) -> F:
    """The flags every command that talks to Temporal takes (defaults from DAGFLOW_*)."""
    for option in reversed(
        [
            click.option(
                "--address", help="Temporal frontend host:port [DAGFLOW_TEMPORAL_ADDRESS]."
            ),
            click.option("--namespace", help="Temporal namespace [DAGFLOW_NAMESPACE]."),
            click.option("--task-queue", help="Task queue of DagRun [DAGFLOW_TASK_QUEUE]."),
        ]
    ):
        fn = option(fn)
    return fn


def settings_from(**flags: Any) -> Settings:
    """Settings from flags (those given), then DAGFLOW_* variables, then defaults."""
    given = {k: v for k, v in flags.items() if v not in (None, ())}
    if "address" in given:
        given["temporal_address"] = given.pop("address")
    if "allow_network" in given:
        given["allowed_networks"] = list(given.pop("allow_network"))
    try:
        return Settings(**given)
    except ValidationError as e:
        problems = [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
        fail(BAD_INPUT, "bad settings:\n  " + "\n  ".join(problems))


async def reach(settings: Settings) -> Client:
    """Connect to Temporal or exit 3 with a message saying where it looked."""
    try:
        return await connect(settings.temporal_address, settings.namespace)
    except RuntimeError as e:
        fail(
            UNREACHABLE,
            f"cannot reach Temporal at {settings.temporal_address}: {e}\n"
            "start one with `dagflow dev`, or pass --address / set DAGFLOW_TEMPORAL_ADDRESS",
        )


# --- dagflow worker ----------------------------------------------------------------------------


@click.command("worker")
@temporal_options
@click.option(
    "--allow-network",
    multiple=True,
    metavar="CIDR",
    help="Let HTTP steps reach this private/loopback network (repeatable) "
    "[DAGFLOW_ALLOWED_NETWORKS, comma-separated].",
)
@click.option("--secrets-file", help="YAML/JSON file of step secrets [DAGFLOW_SECRETS_FILE].")
@click.option("--max-concurrent-activities", type=int, help="Activities run at once.")
@click.option(
    "--max-cached-workflows",
    type=int,
    help="Runs kept in memory between workflow tasks [DAGFLOW_MAX_CACHED_WORKFLOWS; default 1000].",
)
@click.option(
    "--http-circuit-breaker",
    metavar="JSON",
    help='Per-host circuit breaker of HTTP steps that set none, e.g. \'{"failures": 5, '
    '"window": "30s", "open_for": "30s"}\' [DAGFLOW_HTTP_CIRCUIT_BREAKER; default: off].',
)
@click.option(
    "--http-rate-limit",
    metavar="JSON",
    help='Per-host rate limit of HTTP steps that set none, e.g. \'{"per_second": 10, '
    '"burst": 20}\' [DAGFLOW_HTTP_RATE_LIMIT; default: off].',
)
@click.option(
    "--shutdown-grace",
    type=float,
    help="Seconds running activities get after SIGTERM [DAGFLOW_SHUTDOWN_GRACE; default 10].",
)
@click.option(
    "--activities-only",
    is_flag=True,
    help="Serve only step activities (a capability worker for steps' task_queue).",
)
@click.option(
    "--metrics-address",
    metavar="HOST:PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics [DAGFLOW_METRICS_ADDRESS; "
    "default: off].",
)
def worker_cmd(activities_only: bool, **flags: Any) -> None:
    """Run a worker: DagRun and every step kind, until SIGTERM or Ctrl-C.

    On SIGTERM the worker stops polling and gives running activities a grace period, then
    cancels those still running so that Temporal retries them on another worker. A second
    SIGTERM or Ctrl-C cancels them at once.

    \b
    Example:
      dagflow worker --address temporal:7233 --allow-network 10.0.0.0/8
    """
    settings = settings_from(**flags)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_worker(settings, not activities_only))


async def _worker(settings: Settings, workflows: bool) -> None:
    await reach(settings)
    try:
        await run_worker(settings, workflows=workflows)
    except MetricsAddressError as e:
        fail(BAD_INPUT, str(e))


# --- dagflow run -------------------------------------------------------------------------------


@click.command("run")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--input", "input_text", help="The run's input: JSON, or @FILE to read it.")
@click.option("--tenant", default="default", show_default=True, help="Tenant the run belongs to.")
@click.option("--id", "key", help="Run key; running again with the same key returns that run.")
@click.option("--wait", is_flag=True, help="Wait for the run to end; print its output.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--definitions",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder of definitions that workflow steps run (repeatable; default: FILE's folder).",
)
@temporal_options
def run_cmd(
    file: Path,
    input_text: str | None,
    tenant: str,
    key: str | None,
    wait: bool,
    as_json: bool,
    definitions: tuple[Path, ...],
    **flags: Any,
) -> None:
    """Start a run of a definition file straight on Temporal (no starter needed).

    Without --wait it prints the workflow id and returns. With --wait it prints the output
    and exits 0, or prints the failing step and reason and exits 1. Bad files or input exit
    2; an unreachable Temporal exits 3.

    \b
    Example:
      dagflow run examples/order-fulfilment.yaml --wait \\
        --input '{"order_id": "A-1001", "shop_url": "http://127.0.0.1:8288/shop"}'
    """
    settings = settings_from(**flags)
    try:
        definition = read_definition(file, known_kinds())
        library = resolve_library(definition, definitions or (file.parent,), known_kinds())
    except DefinitionFileError as e:
        fail(BAD_INPUT, str(e))
    run_input = parse_input(input_text, definition)
    code = asyncio.run(_run(settings, definition, run_input, tenant, key, wait, as_json, library))
    sys.exit(code)


def parse_input(text: str | None, definition: Definition) -> Any:
    """The run input from ``--input`` (JSON or @FILE), checked against the definition's schema."""
    if text is None:
        value: Any = None
    else:
        if text.startswith("@"):
            try:
                text = Path(text[1:]).read_text(encoding="utf-8")
            except OSError as e:
                fail(BAD_INPUT, f"--input: cannot read {text[1:]}: {e.strerror or e}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            fail(BAD_INPUT, f"--input: not JSON: {e.msg} (line {e.lineno}, column {e.colno})")
    problems = input_problems(definition, value)
    if problems:
        fail(
            BAD_INPUT,
            "--input does not match the definition's input schema:\n  " + "\n  ".join(problems),
        )
    return value


async def _run(
    settings: Settings,
    definition: Definition,
    run_input: Any,
    tenant: str,
    key: str | None,
    wait: bool,
    as_json: bool,
    library: dict[str, Definition],
) -> int:
    client = await reach(settings)
    try:
        handle, _ = await start_run(
            client,
            definition,
            run_input,
            task_queue=settings.task_queue,
            tenant=tenant,
            key=key,
            library=library,
        )
    except RPCError as e:
        if too_large(e):
            fail(BAD_INPUT, f"the run's input and definition are {TOO_LARGE}")
        raise
    if not wait:
        run_id = handle.first_execution_run_id or handle.run_id
        report(as_json, handle.id, run_id, "running", None, None)
        return OK
    return await wait_and_report(handle, as_json)


async def wait_and_report(handle: WorkflowHandle[Any, Any], as_json: bool) -> int:
    """Wait for a run to end and print its output (exit 0) or why it failed (exit 1)."""
    run_id = handle.first_execution_run_id or handle.run_id
    try:
        output = await handle.result()
    except WorkflowFailureError as e:
        status, error = failure_of(e)
        report(as_json, handle.id, run_id, status, None, error)
        return RUN_FAILED
    report(as_json, handle.id, run_id, "completed", output, None)
    return OK


def failure_of(error: WorkflowFailureError) -> tuple[str, str]:
    """The run status and a one-line reason for a failed run."""
    cause = error.cause
    if isinstance(cause, ApplicationError):
        status = "timed_out" if cause.type == "RunTimedOut" else "failed"
        return status, cause.message
    if isinstance(cause, CancelledError):
        return "cancelled", "cancelled"
    if isinstance(cause, RunTimeoutError):
        return "timed_out", "run timed out"
    return "failed", str(cause or error)


def report(
    as_json: bool, workflow_id: str, run_id: str | None, status: str, output: Any, error: str | None
) -> None:
    """Print a run's outcome for people, or as one JSON object with ``--json``."""
    if as_json:
        click.echo(
            json.dumps(
                {
                    "workflow_id": workflow_id,
                    "run_id": run_id,
                    "status": status,
                    "output": output,
                    "error": error,
                }
            )
        )
    elif status == "running":
        click.echo(workflow_id)
    elif error is not None:
        click.echo(f"run {workflow_id} {status}: {error}", err=True)
    else:
        click.echo(json.dumps(output, indent=2))


# --- dagflow dev -------------------------------------------------------------------------------

DEV_EXAMPLE = "order-fulfilment"
DEV_ORDER = "A-1002"
"""The example ``dagflow dev`` runs through the starter: an order that waits for approval."""


@click.command("dev")
@click.option("--port", default=7233, show_default=True, help="Temporal frontend port.")
@click.option("--ui-port", default=8233, show_default=True, help="Temporal Web UI port.")
@click.option("--api-port", default=8080, show_default=True, help="Starter service (API) port.")
@click.option(
    "--demo-port", default=8288, show_default=True, help="Demo services (shop, hooks, ...) port."
)
@click.option(
    "--data-dir",
    default=".dagflow",
    show_default=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Where Temporal, the starter's database and the credentials are kept.",
)
@click.option("--once", is_flag=True, help="Stop after the example run instead of staying up.")
def dev_cmd(
    port: int, ui_port: int, api_port: int, demo_port: int, data_dir: Path, once: bool
) -> None:
    """Start the whole stack locally and run an example through it.

    Starts `temporal server start-dev` (state in DATA_DIR/temporal.db, Web UI on), a worker,
    the demo services the examples call (on 127.0.0.1), and the starter service (SQLite in
    DATA_DIR/dagflow.db). It creates the tenant `demo` with an API key, written to
    DATA_DIR/credentials.json (mode 0600) for the CLI, and stores examples/ as the tenant's
    definitions (new versions when they changed). Then it runs the order-fulfilment example
    through the starter, approves it, and prints its output and where to see it in the Web UI.
    It stays up until Ctrl-C or SIGTERM (or stops at once with --once), stopping everything
    it started. Every port is checked first: a port in use exits 2, starting nothing.

    \b
    Example:
      dagflow dev --port 7233 --ui-port 8233 --api-port 8080 --demo-port 8288
    """
    ports = {"--port": port, "--ui-port": ui_port, "--api-port": api_port}
    ports["--demo-port"] = demo_port
    sys.exit(asyncio.run(_dev(ports, data_dir, once)))


async def _dev(ports: dict[str, int], data_dir: Path, once: bool) -> int:
    """Check the ports, then run the stack until it is done or a signal stops it."""
    from starter import devstack

    try:
        devstack.check_ports(ports)
    except PortInUseError as e:
        fail(BAD_INPUT, f"dagflow dev cannot start: {e}.\nStop what uses it, or pick other ports.")
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    stopping: list[int] = []

    def stop(sig: int) -> None:
        if not stopping:
            stopping.append(sig)
            click.echo("\nStopping ...", err=True)
            main.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)
    try:
        return await _dev_stack(ports, data_dir, once)
    except asyncio.CancelledError:
        if not stopping:
            raise
        main.uncancel()
        return OK
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _dev_stack(ports: dict[str, int], data_dir: Path, once: bool) -> int:
    """Start everything (each piece stopped on the way out, in reverse), then run the example."""
    from starter import demo, devstack
    from starter.client import DagflowClient

    async with contextlib.AsyncExitStack() as stack:
        try:
            server = await start_dev_server(
                data_dir, port=ports["--port"], ui_port=ports["--ui-port"]
            )
        except (RuntimeError, FileNotFoundError) as e:
            fail(UNREACHABLE, f"cannot start Temporal: {e} (see {data_dir / 'temporal.log'})")
        stack.push_async_callback(server.stop)
        secrets_file, webhook_secret = devstack.webhook_secret(data_dir)
        services = await demo.start(webhook_secret=webhook_secret, port=ports["--demo-port"])
        stack.push_async_callback(services.stop)
        settings = Settings(
            temporal_address=server.address,
            allowed_networks=["127.0.0.0/8"],
            secrets_file=str(secrets_file),
            shutdown_grace=2,
        )
        client = await _connect_when_ready(settings)
        worker_stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(settings, stop=worker_stop))
        stack.push_async_callback(_stop_worker, worker, worker_stop)
        instance_key = devstack.new_instance_key()
        api_settings = devstack.service_settings(
            data_dir,
            port=ports["--api-port"],
            temporal_address=server.address,
            instance_key=instance_key,
        )
        api, api_url = await devstack.start_api(api_settings)
        stack.push_async_callback(api.cleanup)
        credentials = await devstack.demo_tenant(api_url, instance_key, data_dir)
        tenant = await stack.enter_async_context(DagflowClient(api_url, credentials.api_key))
        examples = sorted(p for p in EXAMPLES.iterdir() if p.suffix in SUFFIXES)
        loaded = await devstack.load_definitions(tenant, examples)

        click.echo(f"Temporal     {server.address}  (state in {data_dir / 'temporal.db'})")
        click.echo(f"Web UI       {server.ui_url}")
        click.echo(f"API          {api_url}/v1  (tenant {credentials.tenant})")
        click.echo(f"OpenAPI      {api_url}/v1/openapi.json")
        click.echo(
            f"Credentials  {data_dir / devstack.CREDENTIALS_FILE}  "
            "(the demo tenant's API key; the dagflow CLI reads it)"
        )
        click.echo(f"Database     {data_dir / devstack.DATABASE_FILE}")
        for name, url in services.urls().items():
            click.echo(f"Demo {name.removesuffix('_url'):<8}{url}")
        click.echo(f"Worker       task queue {settings.task_queue}, may reach 127.0.0.0/8")
        changed = [f"{d.name} v{d.version}" for d in loaded if d.created]
        click.echo(
            f"Definitions  {len(loaded)} examples in tenant {credentials.tenant}"
            + (f" (new: {', '.join(changed)})" if changed else " (unchanged)")
        )
        code = await _dev_example_run(client, tenant, services.urls(), server.ui_url)
        if not once:
            click.echo(
                "\nThe stack is up. Run more with `dagflow run FILE --wait` or through the API"
                " (see docs/examples.md). Ctrl-C stops it."
            )
            sys.stdout.flush()
            await asyncio.Event().wait()
    return code


async def _stop_worker(worker: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.gather(worker, return_exceptions=True)


async def _connect_when_ready(settings: Settings) -> Client:
    for _ in range(100):
        try:
            return await connect(settings.temporal_address, settings.namespace)
        except RuntimeError:
            await asyncio.sleep(0.3)
    fail(UNREACHABLE, f"Temporal at {settings.temporal_address} did not answer")


async def _dev_example_run(
    client: Client, tenant: DagflowClient, urls: dict[str, str], ui_url: str
) -> int:
    """Run the order-fulfilment example as a run of the demo tenant, through the starter:
    start it, send the approval it waits for, and wait for its output."""
    run_input = {"order_id": DEV_ORDER, "shop_url": urls["shop_url"]}
    ref = await tenant.runs.start(DEV_EXAMPLE, run_input)
    click.echo(f"\nRunning      {DEV_EXAMPLE} v{ref.version} (POST /v1/runs): {ref.workflow_id}")
    click.echo(f"             input {json.dumps(run_input)}")
    await tenant.runs.send(ref.id, "approved", {"by": "dagflow dev"})
    click.echo(f"Approving    POST /v1/runs/{ref.id}/events (event 'approved')")
    sys.stdout.flush()
    code = await wait_and_report(client.get_workflow_handle(ref.workflow_id), as_json=False)
    link = f"{ui_url}/namespaces/default/workflows/{urllib.parse.quote(ref.workflow_id, safe='')}"
    click.echo(f"\nSee it in the Web UI: {link}")
    click.echo(
        f'Runs of tenant demo:  {ui_url}/namespaces/default/workflows?query=TenantId%3D"demo"'
    )
    return code


COMMANDS = [worker_cmd, run_cmd, dev_cmd]
