"""Commands per second and command -> run-started latency of the starter service.

On SQLite and on PostgreSQL, with the service's own cost per request broken down by phase.

Run: ``python bench/bench_starter.py [--commands 1000] [--concurrency 50 | --rate 100]
[--databases ...] [--py-spy FILE]``.

Three processes besides this one, as in a deployment: a Temporal dev server (bench/common.py),
``dagflow worker`` and ``dagflow serve`` (on 127.0.0.1, a free port, generous rate limits). For
each database (a SQLite file in a temporary folder; an embedded PostgreSQL server) a fresh
service starts on a freshly migrated database; this process only generates load, with a bare
aiohttp client. It creates a tenant and its key, a one-step definition (a ``transform``) and a
binding ``bench.cmd`` to it, sends ``--warm-up`` commands of another bound type
(``bench.warmup``), then ``--commands`` commands ``bench.cmd`` with distinct ids:

- closed loop (``--concurrency N``, the default): N senders, each sends its next command when
  the answer to its last one came; the latency runs from sending to the answer;
- open loop (``--rate R``): command i is due at ``start + i / R`` seconds and is sent then,
  however many are in flight; its latency runs from the time it was due, so time spent
  queueing (in this process, the network or the service) counts.

The baseline ("Temporal alone", skipped with ``--no-baseline``) runs first: the same schedule
of starts, straight from a Temporal client in this process, as the service makes them
(``starter.launch.start_run``: the workflow id, search attributes and memo), on the same task
queue. It is what the service cannot do better than on this machine.

A 201 answer means Temporal accepted the run's start (the service records the command only
after the start). Commands per second is the number of commands over the wall time from the
first send to the last answer.

The breakdown comes from the service's own metrics (``GET /metrics``), scraped before and after
the measured commands: ``dagflow_http_request_phase_seconds`` (the phases of ``POST
/v1/commands``: authentication, ledger lookup, bindings, definitions and checks, Temporal
start, ledger write) and ``dagflow_http_request_duration_seconds`` (the whole request in the
service). The mean of each is shown; "rest in the service" is the request minus its phases
(HTTP parsing, middleware, reading the body, the answer's JSON). The CPU seconds each process
used during the measured commands are shown per command (from /proc), and the load of the
whole machine, which other work shares.

With ``--no-worker`` no worker runs: the runs start (and count) but never run, which isolates
the cost of accepting commands and starting runs from the cost of running them.

``--py-spy FILE`` records the service with py-spy (if installed) during the measured commands
(an SVG flame graph; speedscope JSON for a ``.json`` FILE, collapsed stacks for ``.txt``).

Afterwards the run count of the type (``TenantId = '<tenant>' AND DagCommand = 'bench.cmd'``)
must reach ``--commands`` (polled for up to 30 s, for visibility lag). Exits 1 if a command
failed or runs are missing, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from common import ROOT, dev_server, machine, run_script
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from starter.launch import start_run
from starter.runs import REQUEST_HASH, request_hash
from tests.starter import INSTANCE_KEY, Databases, start_embedded_postgres
from workflows.definition import Definition

COMMAND = "bench.cmd"
WARM_UP = "bench.warmup"
DEFINITION = {
    "name": "bench-command",
    "steps": {"echo": {"uses": "transform", "with": {"value": "${{ input }}"}}},
    "output": "${{ steps.echo.output }}",
}
VISIBILITY_WAIT = 30.0
READY_WAIT = 60.0
ROUTE = "/v1/commands"
PHASES = "dagflow_http_request_phase_seconds"
DURATION = "dagflow_http_request_duration_seconds"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LOADAVG = Path("/proc/loadavg")


@dataclass
class Result:
    """One database's numbers."""

    database: str
    commands: int
    mode: str
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    runs: int = 0
    late: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    """Mean seconds per command of each phase in the service."""
    request: float = float("nan")
    """Mean seconds of a command in the service."""
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds per command of each process."""
    busy: float = float("nan")
    """Share of the machine's CPU time busy during the commands (every process on it)."""

    @property
    def rate(self) -> float:
        return self.commands / self.wall if self.wall else 0.0


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``, in ms."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[rank] * 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def temporal_pid() -> int | None:
    """The pid of the dev server this process started (a child named ``temporal``)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, rest = stat.read_text().split(") ", 1)
        except OSError:
            continue
        if name.endswith("(temporal") and int(rest.split()[1]) == os.getpid():
            return int(stat.parent.name)
    return None


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages."""
    return " ".join(LOADAVG.read_text().split()[:3])


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@asynccontextmanager
async def process(name: str, argv: list[str], env: dict[str, str]) -> AsyncIterator[int]:
    """Run ``argv`` (a ``dagflow`` command) in the block; its output goes to a log shown when
    fails. Yields the pid."""
    with tempfile.TemporaryFile(prefix=f"bench-{name}-") as log:
        proc = await asyncio.create_subprocess_exec(
            *argv, env={**os.environ, **env}, stdout=log, stderr=log, cwd=ROOT
        )
        try:
            yield proc.pid
        except BaseException:
            log.seek(0)
            print(f"{name} output:\n{log.read().decode(errors='replace')[-3000:]}")
            raise
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 20)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


def dagflow(*args: str) -> list[str]:
    return [sys.executable, "-c", "from starter.cli import main; main()", *args]


@asynccontextmanager
async def database(kind: str, root: Path) -> AsyncIterator[str]:
    """The async URL of a fresh, migrated database of ``kind``."""
    if kind == "sqlite":
        yield await Databases("sqlite", root).fresh()
        return
    server = start_embedded_postgres(root / "postgres")
    try:
        yield await Databases("postgresql", root, server.get_uri()).fresh()
    finally:
        server.cleanup()


@asynccontextmanager
async def service(url: str, address: str, task_queue: str) -> AsyncIterator[tuple[str, int]]:
    """``dagflow serve`` on ``url``; yields its base URL and pid once it answers."""
    port = free_port()
    env = {
        "DAGFLOW_DATABASE_URL": url,
        "DAGFLOW_TEMPORAL_ADDRESS": address,
        "DAGFLOW_TASK_QUEUE": task_queue,
        "DAGFLOW_INSTANCE_KEY": INSTANCE_KEY,
        "DAGFLOW_RATE_LIMIT": "100000",
        "DAGFLOW_RATE_BURST": "100000",
        "DAGFLOW_PORT": str(port),
    }
    base = f"http://127.0.0.1:{port}"
    async with process("service", dagflow("serve"), env) as pid:
        deadline = time.monotonic() + READY_WAIT
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"{base}/readyz") as answer:
                        if answer.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the service on {base} did not get ready")
                await asyncio.sleep(0.2)
        yield base, pid


async def call(http: aiohttp.ClientSession, method: str, url: str, key: str, body: Any) -> Any:
    """One request that must succeed; its JSON answer."""
    headers = {"Authorization": f"Bearer {key}"}
    async with http.request(method, url, json=body, headers=headers) as answer:
        text = await answer.text()
        if answer.status >= 300:
            raise RuntimeError(f"{method} {url}: {answer.status} {text}")
        return json.loads(text)


Send = Callable[[str, str, float, "Result | None"], Awaitable[None]]
"""Sends one command (kind, id) whose latency counts from a perf_counter time."""


class Sender:
    """Sends commands with a bare aiohttp client and records the answers."""

    def __init__(self, http: aiohttp.ClientSession, base: str, key: str) -> None:
        self.http = http
        self.url = f"{base}{ROUTE}"
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def send(self, kind: str, command_id: str, since: float, result: Result | None) -> None:
        """Send one command; its latency counts from ``since`` (perf_counter seconds)."""
        body = json.dumps({"type": kind, "id": command_id, "payload": {"id": command_id}})
        try:
            async with self.http.post(self.url, data=body, headers=self.headers) as answer:
                text = await answer.text()
                status = answer.status
        except Exception as error:  # every failure is counted and shown
            if result is not None:
                result.errors.append(f"{command_id}: {type(error).__name__}: {error}")
            return
        elapsed = time.perf_counter() - since
        if result is None:
            return
        runs = json.loads(text).get("runs") if status == 201 else None
        if status != 201 or not runs or len(runs) != 1 or not runs[0]["created"]:
            result.errors.append(f"{command_id}: {status} {text[:300]}")
        else:
            result.latencies.append(elapsed)


class Starts:
    """The baseline: the same runs started straight from a Temporal client, as the service
    starts them (``starter.launch.start_run``: workflow id, search attributes, memo)."""

    def __init__(self, temporal: Client, task_queue: str, tenant: str) -> None:
        self.temporal = temporal
        self.task_queue = task_queue
        self.tenant = tenant
        self.definition = Definition.model_validate(DEFINITION)

    async def send(self, kind: str, command_id: str, since: float, result: Result | None) -> None:
        """Start one run; its latency counts from ``since``."""
        payload = {"id": command_id}
        try:
            _, started = await start_run(
                self.temporal,
                self.definition,
                payload,
                task_queue=self.task_queue,
                tenant=self.tenant,
                version=1,
                key=command_id,
                command=kind,
                memo={REQUEST_HASH: request_hash(payload)},
            )
        except Exception as error:  # every failure is counted and shown
            if result is not None:
                result.errors.append(f"{command_id}: {type(error).__name__}: {error}")
            return
        if result is not None:
            if started:
                result.latencies.append(time.perf_counter() - since)
            else:
                result.errors.append(f"{command_id}: the workflow id was in use")


async def closed(
    send: Send, kind: str, ids: list[str], concurrency: int, result: Result | None
) -> None:
    """``concurrency`` senders, each sending its next command after its last answer."""
    queue = iter(ids)

    async def sender() -> None:
        for command_id in queue:
            await send(kind, command_id, time.perf_counter(), result)

    await asyncio.gather(*(sender() for _ in range(concurrency)))


async def open_loop(send: Send, ids: list[str], rate: float, result: Result) -> None:
    """Command i sent at ``start + i / rate``; its latency counts from then."""
    start = time.perf_counter() + 0.01
    tasks = []
    for n, command_id in enumerate(ids):
        due = start + n / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        result.late = max(result.late, time.perf_counter() - due)
        tasks.append(asyncio.create_task(send(COMMAND, command_id, due, result)))
    await asyncio.gather(*tasks)


async def load(send: Send, ids: list[str], args: argparse.Namespace, result: Result) -> None:
    """The measured commands, in the chosen mode; sets the wall time."""
    start = time.perf_counter()
    if args.rate:
        await open_loop(send, ids, args.rate, result)
    else:
        await closed(send, COMMAND, ids, args.concurrency, result)
    result.wall = time.perf_counter() - start


def mode(args: argparse.Namespace) -> str:
    return f"rate {args.rate:g}/s" if args.rate else f"concurrency {args.concurrency}"


async def baseline(temporal: Client, task_queue: str, args: argparse.Namespace) -> Result:
    """The same schedule of starts straight from the Temporal client, no service."""
    result = Result("Temporal alone", args.commands, mode(args))
    tenant = f"bench-base-{uuid.uuid4().hex[:6]}"
    starts = Starts(temporal, task_queue, tenant)
    warm = [f"w-{i}-{uuid.uuid4().hex[:8]}" for i in range(args.warm_up)]
    await closed(starts.send, WARM_UP, warm, min(args.concurrency, 10), None)
    ids = [f"c-{i:05d}-{uuid.uuid4().hex[:8]}" for i in range(args.commands)]
    ticks = machine_ticks()
    await load(starts.send, ids, args, result)
    busy, total = (a - b for a, b in zip(machine_ticks(), ticks, strict=True))
    result.busy = busy / total if total else float("nan")
    result.runs = await count_runs(temporal, tenant, args.commands)
    return result


def metric_sums(text: str) -> dict[str, tuple[float, float]]:
    """``{phase: (sum, count)}`` of the commands route, and ``request`` for the whole request."""
    sums: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (PHASES, DURATION):
            continue
        for sample in family.samples:
            labels = sample.labels
            if labels.get("route") != ROUTE or labels.get("method") != "POST":
                continue
            name = labels.get("phase", "request") if family.name == PHASES else "request"
            if family.name == DURATION and "phase" in labels:
                continue
            slot = sums.setdefault(name, [0.0, 0.0])
            if sample.name.endswith("_sum"):
                slot[0] += sample.value
            elif sample.name.endswith("_count"):
                slot[1] += sample.value
    return {name: (s, c) for name, (s, c) in sums.items()}


async def scrape(http: aiohttp.ClientSession, base: str) -> dict[str, tuple[float, float]]:
    async with http.get(f"{base}/metrics") as answer:
        return metric_sums(await answer.text())


@asynccontextmanager
async def py_spy(pid: int, target: str | None) -> AsyncIterator[None]:
    """Record the process with py-spy during the block, when a file is named."""
    tool = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if target is None or tool is None:
        if target is not None:
            print("py-spy is not installed; no profile")
        yield
        return
    forms = {".json": "speedscope", ".txt": "raw"}
    form = forms.get(Path(target).suffix, "flamegraph")
    proc = await asyncio.create_subprocess_exec(
        tool, "record", "--pid", str(pid), "--rate", "100", "--nonblocking", "--format", form,
        "-o", target, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        await proc.wait()
        print(f"py-spy profile of the service: {target}")


async def count_runs(temporal: Client, tenant: str, expected: int) -> int:
    """The runs of ``bench.cmd`` in ``tenant``, polled until ``expected`` or the wait ends."""
    query = f"TenantId = '{tenant}' AND DagCommand = '{COMMAND}'"
    deadline = time.monotonic() + VISIBILITY_WAIT
    while True:
        count = (await temporal.count_workflows(query)).count
        if count >= expected or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.5)


async def measure(
    kind: str, temporal: Client, task_queue: str, worker: int, args: argparse.Namespace
) -> Result:
    """Start the service on a fresh ``kind`` database and send the commands."""
    result = Result(kind, args.commands, mode(args))
    address = temporal.service_client.config.target_host
    tenant = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as folder:
        async with (
            database(kind, Path(folder)) as url,
            service(url, address, task_queue) as (base, pid),
        ):
            limit = 0 if args.rate else args.concurrency
            connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                admin = f"{base}/v1/instance"
                await call(http, "POST", f"{admin}/tenants", INSTANCE_KEY, {"id": tenant})
                keys = f"{admin}/tenants/{tenant}/keys"
                made = await call(http, "POST", keys, INSTANCE_KEY, {"name": "bench"})
                key = made["key"]
                await call(http, "POST", f"{base}/v1/definitions", key, DEFINITION)
                for kind_ in (COMMAND, WARM_UP):
                    binding = {"type": kind_, "definition": DEFINITION["name"]}
                    await call(http, "POST", f"{base}/v1/bindings", key, binding)
                sender = Sender(http, base, key)
                warm = [f"w-{i}-{uuid.uuid4().hex[:8]}" for i in range(args.warm_up)]
                await closed(sender.send, WARM_UP, warm, min(args.concurrency, 10), None)
                ids = [f"c-{i:05d}-{uuid.uuid4().hex[:8]}" for i in range(args.commands)]
                before = await scrape(http, base)
                pids = {"service": pid, "worker": worker, "load generator": os.getpid()}
                server = temporal_pid()
                if server is not None:
                    pids["dev server"] = server
                cpu = {name: cpu_seconds(p) for name, p in pids.items()}
                ticks = machine_ticks()
                async with py_spy(pid, args.py_spy):
                    await load(sender.send, ids, args, result)
                busy, total = (a - b for a, b in zip(machine_ticks(), ticks, strict=True))
                result.busy = busy / total if total else float("nan")
                result.cpu = {
                    name: (cpu_seconds(p) - cpu[name]) / args.commands for name, p in pids.items()
                }
                after = await scrape(http, base)
    for name, (total_s, count) in after.items():
        s0, c0 = before.get(name, (0.0, 0.0))
        if count - c0 > 0:
            mean = (total_s - s0) / (count - c0)
            if name == "request":
                result.request = mean
            else:
                result.phases[name] = mean
    result.runs = await count_runs(temporal, tenant, args.commands)
    return result


def report(results: list[Result]) -> None:
    """The tables, then any errors."""
    print(
        "\nper command: POST /v1/commands -> 201 with the run started "
        "(open loop: from the time it was due)\n"
    )
    head = (
        f"{'database':<14} {'commands':>8} {'mode':>16} {'cmd/s':>7} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7} {'errors':>6} {'runs':>5}"
    )
    print(head)
    for r in results:
        top = max(r.latencies) * 1000 if r.latencies else float("nan")
        print(
            f"{r.database:<14} {r.commands:>8} {r.mode:>16} {r.rate:>7.1f} "
            f"{percentile(r.latencies, 50):>7.1f} {percentile(r.latencies, 99):>7.1f} "
            f"{top:>7.1f} {len(r.errors):>6} {r.runs:>5}"
        )
    print("\nmean ms per command in the service (its metrics), and CPU ms per command")
    for r in results:
        if not r.cpu:
            print(f"{r.database}: machine busy {r.busy:.0%} of 2 cores")
            continue
        parts = [f"{name} {seconds * 1000:.2f}" for name, seconds in r.phases.items()]
        rest = r.request - sum(r.phases.values())
        print(f"{r.database}: request {r.request * 1000:.2f} = " + " + ".join(parts), end="")
        print(f" + rest in the service {rest * 1000:.2f}")
        cpu = ", ".join(f"{name} {seconds * 1000:.2f}" for name, seconds in r.cpu.items())
        print(f"{r.database}: CPU {cpu}; machine busy {r.busy:.0%} of 2 cores")
        if r.late > 0.005:
            print(f"{r.database}: the load generator sent up to {r.late * 1000:.1f} ms late")
    for r in results:
        for error in r.errors[:10]:
            print(f"{r.database} error: {error}")
        if len(r.errors) > 10:
            print(f"{r.database}: {len(r.errors) - 10} more errors")


async def main() -> int:
    """Measure every chosen database and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=1000, help="measured commands")
    parser.add_argument(
        "--concurrency", type=int, default=50, help="closed loop: commands in flight"
    )
    parser.add_argument(
        "--rate", type=float, help="open loop: commands per second (instead of --concurrency)"
    )
    parser.add_argument("--warm-up", type=int, default=50, help="unmeasured commands first")
    parser.add_argument(
        "--databases", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    parser.add_argument("--py-spy", metavar="FILE", help="record the service with py-spy")
    parser.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the same starts straight from a Temporal client",
    )
    parser.add_argument(
        "--no-worker",
        dest="worker",
        action="store_false",
        help="start no worker: the runs start but never run (the cost of starting alone)",
    )
    args = parser.parse_args()
    print(machine())
    print(f"load average before: {load_average()}")
    results: list[Result] = []
    async with dev_server() as temporal:
        address = temporal.service_client.config.target_host
        task_queue = f"bench-{uuid.uuid4()}"
        worker_env = {"DAGFLOW_TEMPORAL_ADDRESS": address, "DAGFLOW_TASK_QUEUE": task_queue}
        argv = dagflow("worker") if args.worker else [sys.executable, "-c", "input()"]
        async with process("worker", argv, worker_env) as worker:
            if args.baseline:
                print(f"Temporal alone: {args.commands} starts, {mode(args)} ...", flush=True)
                results.append(await baseline(temporal, task_queue, args))
            for kind in args.databases:
                print(f"{kind}: {args.commands} commands, {mode(args)} ...", flush=True)
                results.append(await measure(kind, temporal, task_queue, worker, args))
    print(f"load average after: {load_average()}")
    report(results)
    failed = [r.database for r in results if r.errors or r.runs != r.commands]
    if failed:
        print(f"\nFAILED: {', '.join(failed)} (errors, or runs != commands)")
        return 1
    print("\nno errors; every command started exactly one run")
    return 0


if __name__ == "__main__":
    run_script(main)
