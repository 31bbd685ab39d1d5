"""Scale out: one worker and one starter against two of each, and a worker killed mid-run.

All on one Temporal server and one PostgreSQL database; the killed worker gets SIGKILL.

Every process is a real ``dagflow worker`` or ``dagflow serve`` started by this script. Runs
are started through the starters' API (round robin over the starters of the phase); each run
is a chain of ``--steps`` ``http`` steps that call a local service answering after
``--step-ms``. Each worker runs at most ``--slots`` activities at once, so a worker's step
capacity is ``slots / step time``: adding a worker adds capacity, which is what scaling out is
for (the machine's CPUs are shared by everything here, so CPU-bound work would not show it).

Phases (each on a fresh task queue):

1. ``1 worker, 1 starter``: ``--runs`` runs.
2. ``2 workers, 2 starters``: the same.
3. ``2 workers, one killed``: the same, and once a third of the steps have been answered,
   worker 2 gets SIGKILL. Its steps in flight time out (each step has a ``--step-timeout``
   attempt timeout) and are retried on worker 1; its workflow tasks move to worker 1 once
   their sticky queue times out.

For each phase it prints the wall time from the first start to the last run's end, runs/s
and steps/s, and how many runs completed with the right output. It exits 1 if any run is
lost (not completed, or with a wrong output) or a process fails to start.

Also measured: the starters alone. ``--commands`` run starts through one starter, then
through two (round robin), ``--concurrency`` at a time, with no worker polling (the runs
only need to be accepted): starts/s and p50/p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from common import dev_server, machine, run_script
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus

from starter.client import DagflowClient
from tests.starter import Databases, start_embedded_postgres

INSTANCE_KEY = "bench-scaleout-instance-key"
TENANT = "scaleout"
DAGFLOW = str(Path(sys.executable).with_name("dagflow"))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="runs per phase")
    parser.add_argument("--steps", type=int, default=3, help="http steps per run")
    parser.add_argument("--step-ms", type=int, default=500, help="how long a step's call takes")
    parser.add_argument("--slots", type=int, default=2, help="activities a worker runs at once")
    parser.add_argument("--step-timeout", default="5s", help="a step attempt's timeout")
    parser.add_argument("--commands", type=int, default=300, help="starts in the starter phase")
    parser.add_argument("--concurrency", type=int, default=20, help="requests in flight")
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed per phase")
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Service:
    """The local service the http steps call: answers after ``?ms=`` and counts calls."""

    calls: int = 0
    url: str = ""
    threshold: int = 0
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once ``threshold`` calls have been answered."""

    def reset(self, threshold: int) -> None:
        self.calls, self.threshold = 0, threshold
        self.reached.clear()

    async def handle(self, request: web.Request) -> web.Response:
        await asyncio.sleep(int(request.query.get("ms", "0")) / 1000)
        self.calls += 1
        if self.calls >= self.threshold:
            self.reached.set()
        return web.json_response({"n": int(request.query.get("n", "0"))})


@contextlib.asynccontextmanager
async def slow_service() -> AsyncIterator[Service]:
    service = Service()
    app = web.Application()
    app.router.add_get("/work", service.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    service.url = f"http://127.0.0.1:{port}/work"
    try:
        yield service
    finally:
        await runner.cleanup()


@dataclass
class Processes:
    """The dagflow processes this script started, and their logs."""

    folder: Path
    env: dict[str, str]
    running: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def start(self, name: str, *args: str, **env: str) -> asyncio.subprocess.Process:
        log = (self.folder / f"{name}.log").open("ab")
        process = await asyncio.create_subprocess_exec(
            DAGFLOW, *args, env={**self.env, **env}, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.running.append(process)
        return process

    async def stop(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(p) for p in self.running))
        self.running.clear()


async def start_starter(procs: Processes, name: str, task_queue: str) -> str:
    port = free_port()
    await procs.start(name, "serve", DAGFLOW_PORT=str(port), DAGFLOW_TASK_QUEUE=task_queue)
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/readyz") as answer:
                    if answer.status == 200:
                        return url
            await asyncio.sleep(0.1)
    raise SystemExit(f"{name} did not become ready; see {procs.folder / name}.log")


async def start_worker(
    procs: Processes, client: Client, name: str, task_queue: str, slots: int, expected: int
) -> asyncio.subprocess.Process:
    process = await procs.start(
        name, "worker", DAGFLOW_TASK_QUEUE=task_queue, DAGFLOW_ALLOWED_NETWORKS="127.0.0.0/8",
        DAGFLOW_MAX_CONCURRENT_ACTIVITIES=str(slots), DAGFLOW_SHUTDOWN_GRACE="1",
    )  # fmt: skip
    for _ in range(600):
        if await pollers(client, task_queue) >= expected:
            return process
        if process.returncode is not None:
            break
        await asyncio.sleep(0.1)
    raise SystemExit(f"{name} did not start polling; see {procs.folder / name}.log")


async def pollers(client: Client, task_queue: str) -> int:
    """Worker processes polling the task queue for activities."""
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
    )
    return len({p.identity for p in answer.pollers})


def definition(args: argparse.Namespace, url: str) -> dict[str, Any]:
    steps: dict[str, Any] = {}
    for i in range(args.steps):
        steps[f"call{i}"] = {
            "uses": "http",
            "needs": [f"call{i - 1}"] if i else [],
            "with": {"url": f"{url}?ms={args.step_ms}&n=${{{{ input.n * 10 + {i} }}}}"},
            "timeout": args.step_timeout,
            "retry": {"initial_interval": "100ms"},
        }
    last = f"call{args.steps - 1}"
    return {"name": "scaleout", "steps": steps, "output": f"${{{{ steps.{last}.output.body.n }}}}"}


@dataclass
class Phase:
    name: str
    seconds: float
    completed: int
    runs: int
    steps: int
    note: str = ""

    @property
    def lost(self) -> int:
        return self.runs - self.completed


async def run_phase(
    name: str, tag: str, client: Client, starters: list[DagflowClient], args: argparse.Namespace,
    service: Service, kill: asyncio.subprocess.Process | None = None,
) -> Phase:  # fmt: skip
    service.reset(threshold=args.runs * args.steps // 3)
    rotation = itertools.cycle(starters)
    gate = asyncio.Semaphore(args.concurrency)
    started = time.perf_counter()

    async def start(n: int) -> str:
        async with gate:
            ref = await next(rotation).runs.start("scaleout", {"n": n}, key=f"{tag}-{n}")
            return ref.workflow_id

    ids = await asyncio.gather(*(start(n) for n in range(args.runs)))
    note = ""
    if kill is not None:
        await service.reached.wait()
        kill.send_signal(signal.SIGKILL)
        note = f"worker 2 killed after {service.calls} step calls"

    async def result(n: int, workflow_id: str) -> bool:
        handle = client.get_workflow_handle(workflow_id)
        with contextlib.suppress(Exception):
            output = await asyncio.wait_for(handle.result(), args.timeout)
            return bool(output == n * 10 + args.steps - 1)
        return False

    done = await asyncio.gather(*(result(n, wid) for n, wid in enumerate(ids)))
    seconds = time.perf_counter() - started
    for workflow_id, ok in zip(ids, done, strict=True):
        if not ok:
            status = (await client.get_workflow_handle(workflow_id).describe()).status
            if status == WorkflowExecutionStatus.RUNNING:
                await client.get_workflow_handle(workflow_id).terminate("bench: out of time")
    return Phase(name, seconds, sum(done), args.runs, args.runs * args.steps, note)


async def starter_phase(
    label: str, starters: list[DagflowClient], args: argparse.Namespace
) -> tuple[str, float, float, float]:
    rotation = itertools.cycle(starters)
    gate = asyncio.Semaphore(args.concurrency)
    latencies: list[float] = []

    async def start(n: int) -> None:
        async with gate:
            began = time.perf_counter()
            await next(rotation).runs.start("scaleout", {"n": n}, key=f"{label}-{n}")
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(start(n) for n in range(args.commands)))
    seconds = time.perf_counter() - began
    latencies.sort()
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    return label, args.commands / seconds, latencies[len(latencies) // 2] * 1000, p99 * 1000


async def main() -> int:
    args = parse_args()
    print(machine())
    print(f"{args.runs} runs of {args.steps} http steps of {args.step_ms} ms, {args.slots} slots "
          f"a worker; starters: {args.commands} starts, {args.concurrency} at once")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        folder = Path(tmp)
        postgres = start_embedded_postgres(folder / "postgres")
        try:
            database_url = await Databases("postgresql", folder, postgres.get_uri()).fresh()
            async with dev_server() as client, slow_service() as service:
                env = {
                    **os.environ,
                    "DAGFLOW_TEMPORAL_ADDRESS": client.service_client.config.target_host,
                    "DAGFLOW_DATABASE_URL": database_url,
                    "DAGFLOW_INSTANCE_KEY": INSTANCE_KEY,
                    "DAGFLOW_RATE_LIMIT": "100000",
                    "DAGFLOW_RATE_BURST": "100000",
                    "DAGFLOW_ALERTS": "false",
                }
                procs = Processes(folder, env)
                try:
                    return await measure(args, client, service, procs)
                finally:
                    await procs.stop_all()
        finally:
            postgres.cleanup()


async def stack(
    procs: Processes, client: Client, args: argparse.Namespace, workers: int, starters: int,
    queue: str | None = None,
) -> tuple[list[str], list[asyncio.subprocess.Process]]:  # fmt: skip
    """Start ``starters`` starters and ``workers`` workers on a fresh task queue."""
    queue = queue or f"scaleout-{uuid.uuid4().hex[:8]}"
    urls = [await start_starter(procs, f"starter-{i}", queue) for i in range(1, starters + 1)]
    started = [
        await start_worker(procs, client, f"worker-{i}", queue, args.slots, i)
        for i in range(1, workers + 1)
    ]
    return urls, started


async def measure(
    args: argparse.Namespace, client: Client, service: Service, procs: Processes
) -> int:
    phases: list[Phase] = []
    urls, _ = await stack(procs, client, args, workers=1, starters=1)
    async with DagflowClient(urls[0], INSTANCE_KEY) as admin:
        await admin.instance.create_tenant(TENANT)
        key = (await admin.instance.create_key("bench", tenant=TENANT)).key
    async with DagflowClient(urls[0], key) as api:
        await api.definitions.create(definition(args, service.url))
        phases.append(await run_phase("1 worker, 1 starter", "one", client, [api], args, service))
    await procs.stop_all()

    urls, _ = await stack(procs, client, args, workers=2, starters=2)
    async with DagflowClient(urls[0], key) as a, DagflowClient(urls[1], key) as b:
        phase = await run_phase("2 workers, 2 starters", "two", client, [a, b], args, service)
        phases.append(phase)
    await procs.stop_all()

    urls, workers = await stack(procs, client, args, workers=2, starters=2)
    async with DagflowClient(urls[0], key) as a, DagflowClient(urls[1], key) as b:
        name = "2 workers, one killed"
        phase = await run_phase(name, "kill", client, [a, b], args, service, kill=workers[1])
        phases.append(phase)
    await procs.stop_all()

    # the starters alone: one, then two (runs are accepted; no worker runs them)
    urls, _ = await stack(procs, client, args, workers=0, starters=2)
    async with DagflowClient(urls[0], key) as a, DagflowClient(urls[1], key) as b:
        starts = [await starter_phase("one", [a], args), await starter_phase("two", [a, b], args)]
    report(phases, starts)
    lost = sum(p.lost for p in phases)
    print(f"\n{f'{lost} runs lost' if lost else 'no run lost'}")
    return 1 if lost else 0


def report(phases: list[Phase], starts: list[tuple[str, float, float, float]]) -> None:
    print()
    print("| phase | wall s | runs/s | steps/s | completed | lost | note |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for p in phases:
        rates = f"{p.runs / p.seconds:.2f} | {p.steps / p.seconds:.1f}"
        print(f"| {p.name} | {p.seconds:.2f} | {rates} | {p.completed}/{p.runs} | {p.lost} "
              f"| {p.note} |")  # fmt: skip
    speedup = phases[0].seconds / phases[1].seconds
    print(f"\nthroughput, 2 workers and 2 starters against 1 and 1: {speedup:.2f} times")
    print("\n| starters | starts/s | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- |")
    for label, rate, p50, p99 in starts:
        print(f"| {label} | {rate:.1f} | {p50:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    run_script(main)
