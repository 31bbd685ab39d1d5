"""Full-size runs against the default history limits: no single history may pass 10,240 events.

Run: ``python bench/bench_scale.py [--items 5000] [--steps 1000] [--concurrency N]``.

Two runs with the default DagRunInput limits (``history_limit`` 8000, ``batch_size`` 250): a
``for_each`` over 5,000 items (child workflow batches) and a 1,000-step chain (continue-as-new
when the history is long enough or Temporal suggests it). For each it prints the wall time, the
runs it took (the continue-as-new chain plus child batches) and the longest history. Exits 1 if
a run does not finish within ``--timeout`` seconds, an output is wrong, or any history has more
than 10,240 events (Temporal's history-count warning threshold). ``--concurrency`` gives the
for_each step a ``concurrency`` (by default it has none, so every item may run at once).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from common import (
    bench_worker,
    chain_definition,
    dev_server,
    history_lengths,
    machine,
    run_script,
    running,
    start_dag,
)
from temporalio.api.enums.v1 import WorkflowTaskFailedCause
from temporalio.client import Client
from temporalio.worker import Worker

from workflows.definition import Definition

MAX_EVENTS = 10_240


@dataclass(frozen=True)
class Case:
    """One full-size run and the output it must produce."""

    name: str
    definition: Definition
    input: Any
    expected: Any


def for_each(items: int, concurrency: int | None = None) -> Case:
    """One step over ``items`` items, each returning twice its item."""
    step: dict[str, Any] = {
        "uses": "noop",
        "for_each": "${{ input.items }}",
        "with": {"value": "${{ item * 2 }}"},
    }
    if concurrency:
        step["concurrency"] = concurrency
    definition = {
        "name": f"bench-for-each-{items}",
        "steps": {"each": step},
        "output": "${{ steps.each.output }}",
    }
    label = f"for_each {items} items" + (f" (concurrency {concurrency})" if concurrency else "")
    return Case(
        label,
        Definition.model_validate(definition),
        {"items": list(range(items))},
        [i * 2 for i in range(items)],
    )


def chain(n: int) -> Case:
    """s0 -> ... -> s(n-1), each step's value the one before's output plus one."""
    definition = chain_definition(n, name=f"bench-chain-{n}")
    return Case(f"chain {n} steps", Definition.model_validate(definition), None, n - 1)


@dataclass
class Outcome:
    """What one case did (``wall`` is None when it did not finish in time)."""

    wall: float | None
    chain_runs: int
    children: int
    max_events: int
    ok_output: bool
    longest_task: float = 0.0
    """Longest workflow task (started to completed or failed), seconds."""
    task_failures: list[str] = field(default_factory=list)
    """Workflow tasks that failed or timed out (a run can recover from them)."""
    problems: list[str] = field(default_factory=list)


async def run_case(client: Client, worker: Worker, case: Case, limit: float) -> Outcome:
    """Run ``case`` to the end (or ``limit`` seconds) and walk every history it produced."""
    start = time.perf_counter()
    handle = await start_dag(client, worker, case.definition, case.input)
    workflow_id, run_id = handle.id, handle.first_execution_run_id or ""
    wall: float | None = None
    output: Any = None
    try:
        output = await asyncio.wait_for(handle.result(), limit)
        wall = time.perf_counter() - start
    except TimeoutError:
        pass
    lengths = await history_lengths(client, workflow_id, run_id)
    chain_runs = sum(1 for key in lengths if key.rsplit("@", 1)[0] == workflow_id)
    outcome = Outcome(
        wall=wall,
        chain_runs=chain_runs,
        children=len(lengths) - chain_runs,
        max_events=max(lengths.values()),
        ok_output=output == case.expected,
    )
    await _inspect_tasks(client, lengths, outcome)
    if wall is None:
        outcome.problems = [f"not finished after {limit:.0f} s", *outcome.task_failures]
        await handle.terminate("bench_scale: timed out")
    return outcome


async def _inspect_tasks(client: Client, lengths: dict[str, int], outcome: Outcome) -> None:
    """Record the longest workflow task of every run, and every workflow task that failed or
    timed out (the deadlock detector fails an activation that runs over 2 s; the server times
    out a task after 10 s)."""
    for key in lengths:
        wid, rid = key.rsplit("@", 1)
        history = await client.get_workflow_handle(wid, run_id=rid).fetch_history()
        started = None
        for e in history.events:
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


def _report(outcomes: dict[str, Outcome]) -> list[str]:
    """Print the table; return every failure."""
    print(f"\ndefault limits: history_limit 8000, batch_size 250; allowed: {MAX_EVENTS} events\n")
    head = ("case", "wall s", "runs", "(chain + children)", "max events", "longest task s")
    print(f"{head[0]:<36} {head[1]:>7} {head[2]:>5} {head[3]:>18} {head[4]:>11} {head[5]:>15}  ok")
    failures = []
    for name, o in outcomes.items():
        wall = f"{o.wall:.1f}" if o.wall is not None else "—"
        runs = f"({o.chain_runs} + {o.children})"
        ok = o.wall is not None and o.ok_output and o.max_events <= MAX_EVENTS
        print(
            f"{name:<36} {wall:>7} {o.chain_runs + o.children:>5} {runs:>18} "
            f"{o.max_events:>11} {o.longest_task:>15.2f}  {'yes' if ok else 'NO'}"
        )
        if o.wall is not None:
            for failure in o.task_failures:
                print(f"WARN {name}: {failure} (the run recovered)")
        failures += [f"{name}: {p}" for p in o.problems]
        if o.wall is not None and not o.ok_output:
            failures.append(f"{name}: wrong output")
        if o.max_events > MAX_EVENTS:
            failures.append(f"{name}: a history has {o.max_events} events (> {MAX_EVENTS})")
    return failures


async def main() -> int:
    """Run both cases, print the table, and return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000, help="for_each items")
    parser.add_argument("--steps", type=int, default=1000, help="chain steps")
    parser.add_argument("--concurrency", type=int, help="the for_each step's concurrency")
    parser.add_argument("--timeout", type=float, default=240, help="seconds allowed per case")
    args = parser.parse_args()
    cases = [for_each(args.items, args.concurrency), chain(args.steps)]
    print(machine())
    outcomes: dict[str, Outcome] = {}
    async with dev_server() as client, running(bench_worker(client)) as worker:
        for case in cases:
            print(f"{case.name} ...", flush=True)
            outcomes[case.name] = await run_case(client, worker, case, args.timeout)
    failures = _report(outcomes)
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    run_script(main)
