"""Tenant fairness: does a tenant that floods the task queue starve another tenant?

Run: ``python bench/bench_fairness.py [--flood 500] [--runs 5] [--slots 4] [--step-ms 50]``.

Two dev servers, one after the other: one with task queue fairness on
(``matching.useNewMatcher`` and ``matching.enableFairness``), one with it off. On each, one
worker with ``--slots`` activity slots serves one task queue. Tenant ``flood`` starts
``--flood`` one-step runs (the step sleeps ``--step-ms``); once its backlog is building (the
first 5 times ``--slots`` of its steps have started), tenant ``small`` starts ``--runs`` runs of
the same definition. The runs are started as the starter starts them (``start_run``: the
tenant as fairness key), and DagRun gives each step's activity the same key.

For each server it prints how long the small tenant's runs took from start to result (p50 and
max), how many of the flood's steps were still to start when the small tenant's last run
finished, and how long the flood took to drain; then the ratio off / on. Exits 1 if a run
fails or returns a wrong output.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from common import machine, median, run_script, running
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from starter.devserver import temporal_binary
from starter.launch import start_run
from worker.client import DATA_CONVERTER
from worker.worker import build_worker
from workflows import search_attributes
from workflows.definition import Definition
from workflows.types import StepInput

FAIRNESS_ON = [
    "--dynamic-config-value",
    "matching.useNewMatcher=true",
    "--dynamic-config-value",
    "matching.enableFairness=true",
]
FAIRNESS_OFF = ["--dynamic-config-value", "matching.enableFairness=false"]

FLOOD, SMALL = "flood", "small"


class Slow:
    """The ``slow`` step: sleeps, and records which tenant's step started in what order."""

    def __init__(self, seconds: float, backlog_at: int) -> None:
        self.seconds = seconds
        self.started: list[str] = []
        self.backlog_at = backlog_at
        self.backlog = asyncio.Event()
        """Set once ``backlog_at`` of the flood's steps have started."""

    def count(self, tenant: str) -> int:
        """Steps of ``tenant`` started so far."""
        return sum(1 for t in self.started if t == tenant)

    @activity.defn(name="slow")
    async def slow(self, inp: StepInput) -> Any:
        """Sleep, then return ``with.value``."""
        self.started.append(inp.tenant)
        if self.count(FLOOD) >= self.backlog_at:
            self.backlog.set()
        await asyncio.sleep(self.seconds)
        return inp.with_.get("value")


DEFINITION = Definition.model_validate(
    {
        "name": "fair",
        "steps": {"work": {"uses": "slow", "with": {"value": 1}}},
        "output": "${{ steps.work.output }}",
    }
)


@dataclass
class Outcome:
    """What one server measured."""

    small_seconds: list[float]
    flood_left: int
    """Flood steps not yet started when the small tenant's last run finished."""
    flood_drain: float
    """Seconds from the flood's first start to its last run's result."""


@asynccontextmanager
async def server(extra: list[str]) -> AsyncIterator[Client]:
    """A dev server on free ports with dagflow's search attributes and ``extra`` flags."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=search_attributes.ALL,
        data_converter=DATA_CONVERTER,
        dev_server_extra_args=extra,
    )
    try:
        yield env.client
    finally:
        await env.shutdown()


async def measure(client: Client, args: argparse.Namespace) -> Outcome:
    """Flood the queue as one tenant, then time the other tenant's runs."""
    step = Slow(args.step_ms / 1000, backlog_at=args.slots * 5)
    worker = build_worker(
        client,
        task_queue=f"fair-{uuid.uuid4()}",
        activities=[step.slow],
        max_concurrent_activities=args.slots,
        shutdown_grace=timedelta(seconds=1),
    )
    gate = asyncio.Semaphore(50)

    async def run(tenant: str) -> tuple[float, float, Any]:
        async with gate:
            began = time.perf_counter()
            handle, _ = await start_run(
                client, DEFINITION, task_queue=worker.task_queue, tenant=tenant, version=1
            )
        result = await handle.result()
        return began, time.perf_counter(), result

    async with running(worker):
        flood_began = time.perf_counter()
        flood = [asyncio.create_task(run(FLOOD)) for _ in range(args.flood)]
        await step.backlog.wait()
        small = await asyncio.gather(*(run(SMALL) for _ in range(args.runs)))
        left = args.flood - step.count(FLOOD)
        floods = await asyncio.gather(*flood)
    if any(r != 1 for _, _, r in small + floods):
        raise SystemExit("a run returned a wrong output")
    return Outcome(
        small_seconds=[end - began for began, end, _ in small],
        flood_left=left,
        flood_drain=max(end for _, end, _ in floods) - flood_began,
    )


async def main() -> int:
    """Measure with fairness on and off; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flood", type=int, default=500, help="runs of the flooding tenant")
    parser.add_argument("--runs", type=int, default=5, help="runs of the small tenant")
    parser.add_argument("--slots", type=int, default=4, help="the worker's activity slots")
    parser.add_argument("--step-ms", type=int, default=50, help="how long a step sleeps")
    args = parser.parse_args()
    print(machine())
    print(
        f"flood {args.flood} runs, small tenant {args.runs} runs, {args.slots} activity slots, "
        f"steps of {args.step_ms} ms"
    )
    outcomes: dict[str, Outcome] = {}
    for name, extra in (("off", FAIRNESS_OFF), ("on", FAIRNESS_ON)):
        async with server(extra) as client:
            outcomes[name] = await measure(client, args)
    print()
    print("| fairness | small tenant p50 s | max s | flood steps not started when it finished "
          "| flood drained after s |")  # fmt: skip
    print("| --- | --- | --- | --- | --- |")
    for name, o in outcomes.items():
        print(
            f"| {name} | {median(o.small_seconds):.2f} | {max(o.small_seconds):.2f} "
            f"| {o.flood_left} of {args.flood} | {o.flood_drain:.2f} |"
        )
    off, on = outcomes["off"], outcomes["on"]
    print()
    print(
        f"ratio off / on: p50 {median(off.small_seconds) / median(on.small_seconds):.1f}, "
        f"max {max(off.small_seconds) / max(on.small_seconds):.1f}"
    )
    return 0


if __name__ == "__main__":
    run_script(main)
