"""Full-size runs against the default history limits: no single history may pass 10,240 events.

Run: ``python bench/bench_scale.py [--items 5000] [--steps 1000] [--big-items 100000]
[--parked 1000] [--concurrency N] [--cases ...]``.

Four cases with the default DagRunInput limits (``history_limit`` 8000, ``batch_size`` 250):

- ``for_each``: a ``for_each`` over 5,000 items (child workflow batches) of a ``noop`` step;
- ``chain``: a 1,000-step chain (continue-as-new when the history is long enough or Temporal
  suggests it);
- ``big``: a ``for_each`` over 100,000 string items of the ``shout`` step (the test plugin),
  whose input (1.4 MB) and output (2.3 MB) are over what Temporal takes in one payload, run by
  a ``dagflow worker`` process with the payload store (``DAGFLOW_PAYLOAD_STORE``) on;
- ``parked``: 1,000 runs parked at once on a ``wait`` step in one ``dagflow worker`` process,
  then released by ``send_event``.

The first two run in this process's worker; the last two in a ``dagflow worker`` of their own
(a fresh one per case), whose resident memory is sampled (peak: the kernel's ``VmHWM``). For
each case it prints the wall time, the runs it took (the continue-as-new chain plus child
batches), the longest history, the largest payload in any history (every event scanned), and
the worker's peak RSS. Exits 1 if a run does not finish within its timeout, an output is wrong,
a history has more than 10,240 events (Temporal's history-count warning threshold), a payload is
over 2 MB (Temporal's limit), or the worker's peak RSS is over 1 GB. ``--concurrency`` gives the
for_each steps a ``concurrency`` (by default they have none: at most 2 batches in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    bench_worker,
    chain_definition,
    dev_server,
    machine,
    run_histories,
    run_script,
    running,
)
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowHandle

from worker.client import connect
from worker.payloads import STORE_VAR, PayloadStore
from workflows.definition import Definition
from workflows.search_attributes import run_attributes
from workflows.types import WORKFLOW_TYPE, DagRunInput, SendEvent

MAX_EVENTS = 10_240
MAX_PAYLOAD = 2 * 1024 * 1024
"""Temporal's limit on one payload (the server's blob size error limit)."""
MAX_RSS = 1024 * 1024 * 1024
"""The worker's resident memory may not pass 1 GB."""
DAGFLOW = str(Path(sys.executable).parent / "dagflow")


@dataclass(frozen=True)
class Case:
    """One full-size run and the output it must produce."""

    name: str
    definition: Definition
    input: Any
    expected: Any


def _over_items(name: str, uses: str, with_: dict[str, Any], concurrency: int | None) -> Definition:
    """One step ``each`` of kind ``uses`` over ``input.items``; the run's output is its output."""
    step: dict[str, Any] = {"uses": uses, "for_each": "${{ input.items }}", "with": with_}
    if concurrency:
        step["concurrency"] = concurrency
    definition = {"name": name, "steps": {"each": step}, "output": "${{ steps.each.output }}"}
    return Definition.model_validate(definition)


def _label(text: str, concurrency: int | None) -> str:
    return text + (f" (concurrency {concurrency})" if concurrency else "")


def for_each(items: int, concurrency: int | None = None) -> Case:
    """One step over ``items`` items, each returning twice its item."""
    return Case(
        _label(f"for_each {items} items", concurrency),
        _over_items(f"bench-for-each-{items}", "noop", {"value": "${{ item * 2 }}"}, concurrency),
        {"items": list(range(items))},
        [i * 2 for i in range(items)],
    )


def big_for_each(items: int, concurrency: int | None = None) -> Case:
    """One ``shout`` step over ``items`` strings (``item-000000``); each output is a map, so
    100,000 items make a 1.4 MB input and a 2.3 MB output."""
    names = [f"item-{i:06d}" for i in range(items)]
    return Case(
        _label(f"for_each {items} items, store", concurrency),
        _over_items(f"bench-big-for-each-{items}", "shout", {"text": "${{ item }}"}, concurrency),
        {"items": names},
        [{"text": n.upper()} for n in names],
    )


def chain(n: int) -> Case:
    """s0 -> ... -> s(n-1), each step's value the one before's output plus one."""
    definition = chain_definition(n, name=f"bench-chain-{n}")
    return Case(f"chain {n} steps", Definition.model_validate(definition), None, n - 1)


PARKED = Definition.model_validate(
    {
        "name": "bench-parked",
        "steps": {"park": {"uses": "wait", "with": {"event": "go"}}},
        "output": "${{ steps.park.output }}",
    }
)
"""One wait step on the event ``go``; the output is the event's payload."""


@dataclass
class Outcome:
    """What one case did (``wall`` is None when it did not finish in time)."""

    wall: float | None
    chain_runs: int = 0
    children: int = 0
    max_events: int = 0
    ok_output: bool = False
    max_payload: int = 0
    """The largest payload in any event of any history, bytes."""
    references: int = 0
    """Payloads in history that are references to the payload store."""
    rss_peak: int | None = None
    """The worker process's peak resident memory (VmHWM), bytes; None: in this process."""
    rss_parked: int | None = None
    """The worker's resident memory with every run parked (the parked case), bytes."""
    rss_idle: int | None = None
    """The worker's resident memory once polling, before the case started, bytes."""
    stored: tuple[int, int] = (0, 0)
    """Files and bytes in the payload store after the case."""
    runs: int = 1
    longest_task: float = 0.0
    """Longest workflow task (started to completed or failed), seconds."""
    task_failures: list[str] = field(default_factory=list)
    """Workflow tasks that failed or timed out (a run can recover from them)."""
    problems: list[str] = field(default_factory=list)


async def start_run(
    client: Client, task_queue: str, case_definition: Definition, run_input: Any, tenant: str
) -> WorkflowHandle[Any, Any]:
    """Start a DagRun of ``case_definition`` on ``task_queue`` as the starter would."""
    name = case_definition.name
    return await client.start_workflow(
        WORKFLOW_TYPE,
        DagRunInput(definition=case_definition, input=run_input, tenant=tenant, version=1),
        id=f"{tenant}/{name}/{uuid.uuid4()}",
        task_queue=task_queue,
        search_attributes=run_attributes(tenant, name, 1, None),
    )


async def run_case(client: Client, task_queue: str, case: Case, limit: float) -> Outcome:
    """Run ``case`` to the end (or ``limit`` seconds) and walk every history it produced."""
    start = time.perf_counter()
    handle = await start_run(client, task_queue, case.definition, case.input, "acme")
    workflow_id, run_id = handle.id, handle.first_execution_run_id or ""
    wall: float | None = None
    output: Any = None
    try:
        output = await asyncio.wait_for(handle.result(), limit)
        wall = time.perf_counter() - start
    except TimeoutError:
        pass
    outcome = Outcome(wall=wall, ok_output=output == case.expected)
    await walk(client, workflow_id, run_id, outcome)
    if wall is None:
        outcome.problems = [f"not finished after {limit:.0f} s", *outcome.task_failures]
        await handle.terminate("bench_scale: timed out")
    return outcome


async def walk(client: Client, workflow_id: str, run_id: str, outcome: Outcome) -> None:
    """Walk the run's continue-as-new chain and every child it started: count the runs and
    their events, find the largest payload, time the workflow tasks (the deadlock detector
    fails an activation that runs over 2 s; the server times out a task after 10 s)."""
    async for wid, _, history in run_histories(client, workflow_id, run_id):
        if wid == workflow_id:
            outcome.chain_runs += 1
        else:
            outcome.children += 1
        outcome.max_events = max(outcome.max_events, len(history.events))
        started = None
        for e in history.events:
            for size, reference in payload_sizes(e):
                outcome.max_payload = max(outcome.max_payload, size)
                outcome.references += reference
            if e.HasField("workflow_task_started_event_attributes"):
                started = e.event_time.ToDatetime()
            elif started is not None and (
                e.HasField("workflow_task_completed_event_attributes")
                or e.HasField("workflow_task_failed_event_attributes")
            ):
                took = (e.event_time.ToDatetime() - started).total_seconds()
                outcome.longest_task = max(outcome.longest_task, took)
            if e.HasField("workflow_task_timed_out_event_attributes"):
                outcome.task_failures.append(f"{wid}: workflow task timed out")
            if e.HasField("workflow_task_failed_event_attributes"):
                failed = e.workflow_task_failed_event_attributes
                cause = WorkflowTaskFailedCause.Name(failed.cause)
                reason = f"{cause}: {failed.failure.message}".rstrip(": ")
                outcome.task_failures.append(f"{wid}: workflow task failed: {reason}")


def payload_sizes(message: Message) -> Iterator[tuple[int, bool]]:
    """Every ``Payload`` nested anywhere in ``message``: its size in bytes as history holds it,
    and whether it is a reference to externally stored data."""
    for descriptor, value in message.ListFields():
        if descriptor.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if descriptor.message_type.GetOptions().map_entry:
            values = list(value.values())
        elif descriptor.is_repeated:
            values = list(value)
        else:
            values = [value]
        for v in values:
            if isinstance(v, Payload):
                yield v.ByteSize(), len(v.external_payloads) > 0
            elif isinstance(v, Message):
                yield from payload_sizes(v)


# --- a dagflow worker in a process of its own ---------------------------------------------------


@dataclass
class WorkerProcess:
    """A ``dagflow worker`` subprocess and its resident memory."""

    process: asyncio.subprocess.Process
    log: Path
    samples: list[int] = field(default_factory=list)

    def rss(self) -> int:
        """Its resident memory now, bytes."""
        return _status_kb(self.process.pid, "VmRSS") * 1024

    def peak(self) -> int:
        """Its peak resident memory so far (the kernel's high-water mark), bytes."""
        return max(_status_kb(self.process.pid, "VmHWM") * 1024, *self.samples, 0)


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


@contextlib.asynccontextmanager
async def worker_process(
    address: str, task_queue: str, store: Path, cached: int | None
) -> AsyncIterator[WorkerProcess]:
    """``dagflow worker`` on ``task_queue`` with the payload store at ``store``, polling when the
    block starts; SIGTERM after."""
    log = store.parent / f"worker-{task_queue}.log"
    env = {**os.environ, STORE_VAR: str(store), "DAGFLOW_SHUTDOWN_GRACE": "1"}
    args = [DAGFLOW, "worker", "--address", address, "--task-queue", task_queue]
    if cached is not None:
        args += ["--max-cached-workflows", str(cached)]
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *args, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    worker = WorkerProcess(proc, log)
    try:
        deadline = time.monotonic() + 60
        while "worker polling" not in log.read_text(errors="replace"):
            if proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dagflow worker did not start:\n{log.read_text()}")
            await asyncio.sleep(0.1)
        sampler = asyncio.create_task(_sample(worker))
        try:
            yield worker
        finally:
            sampler.cancel()
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _sample(worker: WorkerProcess) -> None:
    with contextlib.suppress(OSError, ValueError):
        while True:
            worker.samples.append(worker.rss())
            await asyncio.sleep(0.25)


def _store_size(store: Path) -> tuple[int, int]:
    files = [p for p in store.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


async def run_big(address: str, case: Case, limit: float, cached: int | None) -> Outcome:
    """``case`` on a ``dagflow worker`` process of its own, with the payload store on."""
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        store = Path(folder) / "payloads"
        client = await connect(address, store=PayloadStore(store))
        task_queue = f"bench-{uuid.uuid4()}"
        async with worker_process(address, task_queue, store, cached) as worker:
            idle = worker.rss()
            outcome = await run_case(client, task_queue, case, limit)
            outcome.rss_peak = worker.peak()
            outcome.rss_idle = idle
        outcome.stored = _store_size(store)
    return outcome


async def run_parked(address: str, runs: int, limit: float, cached: int | None) -> Outcome:
    """``runs`` runs of PARKED, all waiting at once in one ``dagflow worker``, then released."""
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        store = Path(folder) / "payloads"
        client = await connect(address, store=PayloadStore(store))
        task_queue = f"bench-{uuid.uuid4()}"
        tenant = f"bench-parked-{uuid.uuid4().hex[:8]}"
        gate = asyncio.Semaphore(50)

        async def start(i: int) -> WorkflowHandle[Any, Any]:
            async with gate:
                return await start_run(client, task_queue, PARKED, None, tenant)

        async def release(i: int, handle: WorkflowHandle[Any, Any]) -> Any:
            async with gate:
                await handle.signal("send_event", SendEvent(name="go", payload=i))
            return await handle.result()

        async with worker_process(address, task_queue, store, cached) as worker:
            idle = worker.rss()
            begin = time.perf_counter()
            handles = await asyncio.gather(*(start(i) for i in range(runs)))
            outcome = Outcome(wall=None, runs=runs, rss_idle=idle)
            query = f"TenantId = '{tenant}' AND DagStatus = 'Waiting'"
            deadline = time.monotonic() + limit
            while (await client.count_workflows(query)).count < runs:
                if time.monotonic() > deadline:
                    outcome.problems.append(f"not all {runs} runs parked after {limit:.0f} s")
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(2)
            outcome.rss_parked = worker.rss()
            try:
                outputs = await asyncio.wait_for(
                    asyncio.gather(*(release(i, h) for i, h in enumerate(handles))), limit
                )
                outcome.wall = time.perf_counter() - begin
                outcome.ok_output = outputs == list(range(runs))
            except TimeoutError:
                outcome.problems.append(f"not all released after {limit:.0f} s")
            outcome.rss_peak = worker.peak()
        for handle in handles:
            probe = Outcome(wall=None)
            await walk(client, handle.id, handle.first_execution_run_id or "", probe)
            outcome.chain_runs += probe.chain_runs
            outcome.children += probe.children
            outcome.max_events = max(outcome.max_events, probe.max_events)
            outcome.max_payload = max(outcome.max_payload, probe.max_payload)
            outcome.longest_task = max(outcome.longest_task, probe.longest_task)
            outcome.task_failures += probe.task_failures
    return outcome


# --- the report ----------------------------------------------------------------------------------


def _mb(size: int | None) -> str:
    return "—" if size is None else f"{size / 1e6:.1f}"


def _report(outcomes: dict[str, Outcome]) -> list[str]:
    """Print the table; return every failure."""
    print(
        f"\ndefault limits: history_limit 8000, batch_size 250; allowed: {MAX_EVENTS} events, "
        f"{MAX_PAYLOAD // 1024} KiB per payload, {MAX_RSS // 2**20} MiB worker RSS\n"
    )
    head = ("case", "wall s", "runs", "(chain + children)", "max events", "max payload KB",
            "refs", "worker RSS MB", "longest task s")  # fmt: skip
    print(
        f"{head[0]:<40} {head[1]:>7} {head[2]:>5} {head[3]:>18} {head[4]:>10} {head[5]:>14} "
        f"{head[6]:>5} {head[7]:>13} {head[8]:>14}  ok"
    )
    failures = []
    for name, o in outcomes.items():
        wall = f"{o.wall:.1f}" if o.wall is not None else "—"
        runs = f"({o.chain_runs} + {o.children})"
        too_big = o.max_payload > MAX_PAYLOAD
        too_fat = o.rss_peak is not None and o.rss_peak > MAX_RSS
        ok = (
            o.wall is not None
            and o.ok_output
            and o.max_events <= MAX_EVENTS
            and not too_big
            and not too_fat
            and not o.problems
        )
        print(
            f"{name:<40} {wall:>7} {o.chain_runs + o.children:>5} {runs:>18} "
            f"{o.max_events:>10} {o.max_payload / 1000:>14.1f} {o.references:>5} "
            f"{_mb(o.rss_peak):>13} {o.longest_task:>14.2f}  {'yes' if ok else 'NO'}"
        )
        if o.rss_idle is not None:
            print(f"  worker RSS idle, before the case: {_mb(o.rss_idle)} MB")
        if o.rss_parked is not None:
            print(f"  worker RSS with all {o.runs} runs parked: {_mb(o.rss_parked)} MB")
        if o.stored != (0, 0):
            print(f"  payload store: {o.stored[0]} files, {o.stored[1] / 1e6:.1f} MB")
        if o.wall is not None:
            for failure in o.task_failures:
                print(f"WARN {name}: {failure} (the run recovered)")
        failures += [f"{name}: {p}" for p in o.problems]
        if o.wall is not None and not o.ok_output:
            failures.append(f"{name}: wrong output")
        if o.max_events > MAX_EVENTS:
            failures.append(f"{name}: a history has {o.max_events} events (> {MAX_EVENTS})")
        if too_big:
            failures.append(f"{name}: a payload has {o.max_payload} bytes (> {MAX_PAYLOAD})")
        if too_fat:
            failures.append(f"{name}: the worker's RSS reached {_mb(o.rss_peak)} MB")
    return failures


CASES = ("for_each", "chain", "big", "parked")


async def main() -> int:
    """Run the cases, print the table, and return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000, help="for_each items")
    parser.add_argument("--steps", type=int, default=1000, help="chain steps")
    parser.add_argument("--big-items", type=int, default=100_000, help="big for_each items")
    parser.add_argument("--parked", type=int, default=1000, help="runs parked at once")
    parser.add_argument("--concurrency", type=int, help="the for_each steps' concurrency")
    parser.add_argument("--timeout", type=float, default=240, help="seconds allowed per case")
    parser.add_argument(
        "--big-timeout", type=float, default=3600, help="seconds allowed for the big case"
    )
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}"
    )
    parser.add_argument(
        "--max-cached",
        type=int,
        help="the dagflow workers' --max-cached-workflows (default: theirs, 1000)",
    )
    args = parser.parse_args()
    chosen = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(chosen) - set(CASES))
    if unknown:
        parser.error(f"--cases: unknown {', '.join(unknown)} (choose from {', '.join(CASES)})")
    print(machine())
    outcomes: dict[str, Outcome] = {}
    async with dev_server() as client:
        address = client.service_client.config.target_host
        local = [c for c in (for_each(args.items, args.concurrency), chain(args.steps))
                 if c.name.split()[0] in chosen]  # fmt: skip
        if local:
            async with running(bench_worker(client)) as worker:
                for case in local:
                    print(f"{case.name} ...", flush=True)
                    outcomes[case.name] = await run_case(
                        client, worker.task_queue, case, args.timeout
                    )
        if "big" in chosen:
            case = big_for_each(args.big_items, args.concurrency)
            print(f"{case.name} ...", flush=True)
            outcomes[case.name] = await run_big(address, case, args.big_timeout, args.max_cached)
        if "parked" in chosen:
            name = f"{args.parked} runs parked on wait"
            if args.max_cached is not None:
                name += f" (cache {args.max_cached})"
            print(f"{name} ...", flush=True)
            outcomes[name] = await run_parked(address, args.parked, args.timeout, args.max_cached)
    failures = _report(outcomes)
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    run_script(main)
