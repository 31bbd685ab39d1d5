"""Commands per second and start latency of the starter service, on SQLite and on PostgreSQL.

Run: ``python bench/bench_starter.py [--commands 1000] [--concurrency 50] [--databases ...]``.

One Temporal dev server and one worker (bench/common.py) serve both databases. For each
database (a SQLite file in a temporary folder; an embedded PostgreSQL server) the starter
service runs in this process on 127.0.0.1 (a real aiohttp server, as the tests start it), on a
freshly migrated database, with generous rate limits. The script creates a tenant and its
key, a one-step definition (a ``transform``) and a binding ``bench.cmd`` to it, sends
``--warm-up`` commands of another bound type (``bench.warmup``), then ``--commands`` commands
``bench.cmd`` with distinct ids, ``--concurrency`` at a time, through ``DagflowClient``.

A command's latency runs from sending ``POST /v1/commands`` to its answer; a 201 answer means
Temporal accepted the run's start (the service waits for the start before recording the
command). Commands per second is the number of commands over the wall time of all of them.
The time spent in ``Client.start_workflow`` (the Temporal start, measured in the service)
is shown beside it; the rest of a request is HTTP, authentication, the database (ledger
lookup, bindings, definition, ledger write) and the checks.

Afterwards the run count of the type (``TenantId = '<tenant>' AND DagCommand = 'bench.cmd'``)
must reach ``--commands`` (polled for up to 30 s, for visibility lag). Exits 1 if a command
failed or runs are missing, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import bench_worker, dev_server, machine, run_script, running
from temporalio.client import Client

from starter.client import DagflowClient
from tests.starter import Databases, service_settings, start_embedded_postgres
from tests.starter import running as service_running

COMMAND = "bench.cmd"
WARM_UP = "bench.warmup"
DEFINITION = {
    "name": "bench-command",
    "steps": {"echo": {"uses": "transform", "with": {"value": "${{ input }}"}}},
    "output": "${{ steps.echo.output }}",
}
VISIBILITY_WAIT = 30.0


class StartTimer:
    """Wall seconds of every ``Client.start_workflow`` call made while installed."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._original: Any = None

    def install(self) -> None:
        original = self._original = Client.start_workflow
        seconds = self.seconds

        @functools.wraps(original)
        async def start_workflow(client: Client, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await original(client, *args, **kwargs)
            finally:
                seconds.append(time.perf_counter() - start)

        Client.start_workflow = start_workflow  # type: ignore[method-assign]

    def uninstall(self) -> None:
        Client.start_workflow = self._original  # type: ignore[method-assign]


@dataclass
class Result:
    """One database's numbers."""

    database: str
    commands: int
    concurrency: int
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    runs: int = 0

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


async def send_all(
    client: DagflowClient, kind: str, ids: list[str], concurrency: int, result: Result | None
) -> None:
    """Send a command of type ``kind`` for each id, ``concurrency`` at a time."""
    queue = iter(ids)

    async def sender() -> None:
        for command_id in queue:
            start = time.perf_counter()
            try:
                sent = await client.commands.send(kind, command_id, {"id": command_id})
            except Exception as error:  # every failure is counted and shown
                if result is not None:
                    result.errors.append(f"{command_id}: {type(error).__name__}: {error}")
                continue
            elapsed = time.perf_counter() - start
            if result is None:
                continue
            if not sent.created or len(sent.runs) != 1 or not sent.runs[0].created:
                result.errors.append(f"{command_id}: unexpected answer {sent.model_dump()}")
            else:
                result.latencies.append(elapsed)

    await asyncio.gather(*(sender() for _ in range(concurrency)))


async def count_runs(temporal: Client, tenant: str, expected: int) -> int:
    """The runs of ``bench.cmd`` in ``tenant``, polled until ``expected`` or the wait ends."""
    query = f"TenantId = '{tenant}' AND DagCommand = '{COMMAND}'"
    deadline = time.monotonic() + VISIBILITY_WAIT
    while True:
        count = (await temporal.count_workflows(query)).count
        if count >= expected or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.5)


async def measure(kind: str, temporal: Client, task_queue: str, args: argparse.Namespace) -> Result:
    """Start the service on a fresh ``kind`` database and send the commands."""
    result = Result(kind, args.commands, args.concurrency)
    address = temporal.service_client.config.target_host
    tenant = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as folder:
        async with database(kind, Path(folder)) as url:
            settings = service_settings(url, address, task_queue=task_queue)
            async with service_running(settings) as service:
                admin = service.instance()
                await admin.instance.create_tenant(tenant)
                key = (await admin.instance.create_key("bench", tenant=tenant)).key
                client = service.client(key)
                await client.definitions.create(DEFINITION)
                await client.bindings.create(COMMAND, DEFINITION["name"])
                await client.bindings.create(WARM_UP, DEFINITION["name"])
                warm = [f"w-{i}" for i in range(args.warm_up)]
                await send_all(client, WARM_UP, warm, args.concurrency, None)
                ids = [f"c-{i:05d}-{uuid.uuid4().hex[:8]}" for i in range(args.commands)]
                timer = StartTimer()
                timer.install()
                try:
                    start = time.perf_counter()
                    await send_all(client, COMMAND, ids, args.concurrency, result)
                    result.wall = time.perf_counter() - start
                finally:
                    timer.uninstall()
                result.starts = timer.seconds
    result.runs = await count_runs(temporal, tenant, args.commands)
    return result


def report(results: list[Result]) -> None:
    """The table, then any errors."""
    print(
        "\nper command: POST /v1/commands sent -> 201 with the run started; "
        "Temporal start = Client.start_workflow in the service\n"
    )
    head = (
        f"{'database':<11} {'commands':>8} {'conc.':>5} {'cmd/s':>7} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6} {'runs':>5}  {'start p50 ms':>12} {'start p99 ms':>12} "
        f"{'start share':>11}"
    )
    print(head)
    for r in results:
        share = sum(r.starts) / sum(r.latencies) if r.latencies else float("nan")
        print(
            f"{r.database:<11} {r.commands:>8} {r.concurrency:>5} {r.rate:>7.1f} "
            f"{percentile(r.latencies, 50):>7.1f} {percentile(r.latencies, 99):>7.1f} "
            f"{len(r.errors):>6} {r.runs:>5}  {percentile(r.starts, 50):>12.1f} "
            f"{percentile(r.starts, 99):>12.1f} {share:>11.0%}"
        )
    for r in results:
        if r.latencies:
            mean = statistics.fmean(r.latencies) * 1000
            print(f"{r.database}: mean {mean:.1f} ms, max {max(r.latencies) * 1000:.1f} ms")
        for error in r.errors[:10]:
            print(f"{r.database} error: {error}")
        if len(r.errors) > 10:
            print(f"{r.database}: {len(r.errors) - 10} more errors")


async def main() -> int:
    """Measure every chosen database and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=1000, help="measured commands")
    parser.add_argument("--concurrency", type=int, default=50, help="commands in flight")
    parser.add_argument("--warm-up", type=int, default=50, help="unmeasured commands first")
    parser.add_argument(
        "--databases", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    args = parser.parse_args()
    print(machine())
    results: list[Result] = []
    async with dev_server() as temporal:
        worker = bench_worker(temporal)
        async with running(worker):
            for kind in args.databases:
                print(
                    f"{kind}: {args.commands} commands, {args.concurrency} at a time ...",
                    flush=True,
                )
                results.append(await measure(kind, temporal, worker.task_queue, args))
    report(results)
    failed = [r.database for r in results if r.errors or r.runs != r.commands]
    if failed:
        print(f"\nFAILED: {', '.join(failed)} (errors, or runs != commands)")
        return 1
    print("\nno errors; every command started exactly one run")
    return 0


if __name__ == "__main__":
    run_script(main)
