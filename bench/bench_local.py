"""A chain of short steps as local activities: DagRun against hand-written Temporal workflows.

Run: ``python bench/bench_local.py [--steps 50] [--repeat 3] [--checkpoint-steps 5]``.

Every step is the same ``noop`` activity with the same input, activity id, summary, timeout and
retry policy (bench/baseline.py, bench/baseline_local.py), on one worker configured as
``build_worker`` does, against an in-memory dev server. Variants, each warmed up once, then
``--repeat`` runs each, interleaved:

- ``hand, activity``: the hand-written chain of regular activities (bench/baseline.py);
- ``hand, local``: the same chain as local activities;
- ``DagRun, activity``: the chain definition with the default ``execution: activity``;
- ``DagRun, local``: the same definition with ``defaults: {execution: local}``;
- ``hand, local + timer``: local activities with a 1 ms timer after each step, so that each
  step's marker is recorded before the next step starts (``--checkpoint-steps`` steps, as each
  timer costs a server round trip; 0 leaves it out).

Prints the median wall time from start to result, per step, the CPU time of the workflow
code (its activations, on the workflow task executor's threads), the history's events and
workflow tasks (how many times the results were written), and the ratio DagRun local /
hand-written local. Target: DagRun local <= 10 ms per step. Exits 0 whatever the figures (it
is a measurement), and 1 only if a run gave a wrong output.
"""

from __future__ import annotations

import argparse
import uuid
from dataclasses import dataclass
from typing import Any

from baseline import ChainWorkflow, ShapeInput
from baseline_local import LocalChainInput, LocalChainWorkflow
from common import (
    MeteredExecutor,
    bench_worker,
    dev_server,
    machine,
    median,
    run_script,
    running,
    timed,
)
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from tests.engine import chain_definition, start_dag
from workflows.definition import Definition
from workflows.search_attributes import run_attributes

TARGET_MS = 10.0
TENANT = "acme"
VARIANTS = ("hand, activity", "hand, local", "DagRun, activity", "DagRun, local")
CHECKPOINT = "hand, local + timer"


@dataclass
class Sample:
    """One run: wall seconds, CPU seconds of the workflow code (its activations), history
    events, workflow tasks completed."""

    wall: float
    workflow_cpu: float
    events: int
    tasks: int


def definitions(steps: int) -> dict[str, Definition]:
    """The chain as DagRun runs it, with regular and with local steps."""
    regular = chain_definition(steps, name=f"bench-local-chain-{steps}")
    local = {**regular, "defaults": {"execution": "local"}}
    return {
        "DagRun, activity": Definition.model_validate(regular),
        "DagRun, local": Definition.model_validate(local),
    }


async def run_once(
    client: Client,
    worker: Worker,
    executor: MeteredExecutor,
    variant: str,
    steps: int,
    dags: dict[str, Definition],
) -> Sample:
    """Start one run of ``variant``, wait for its result, and read its history."""
    name = f"bench-local-chain-{steps}"

    async def start_and_wait() -> tuple[Any, WorkflowHandle[Any, Any]]:
        if variant in dags:
            handle = await start_dag(client, worker, dags[variant], tenant=TENANT)
        else:
            handle = await client.start_workflow(
                ChainWorkflow.run if variant == "hand, activity" else LocalChainWorkflow.run,
                ShapeInput(name=name, size=steps)
                if variant == "hand, activity"
                else LocalChainInput(name=name, size=steps, checkpoint=variant == CHECKPOINT),
                id=f"{TENANT}/{name}/{uuid.uuid4()}",
                task_queue=worker.task_queue,
                search_attributes=run_attributes(TENANT, name, 1),
            )
        return await handle.result(), handle

    cpu = executor.cpu
    wall, (output, handle) = await timed(start_and_wait)
    cpu = executor.cpu - cpu
    if output != steps - 1:
        raise SystemExit(f"{variant}: output {output!r}, expected {steps - 1}")
    events = (await handle.fetch_history()).events
    tasks = sum(1 for e in events if e.HasField("workflow_task_completed_event_attributes"))
    return Sample(wall, cpu, len(events), tasks)


async def measure(
    client: Client,
    worker: Worker,
    executor: MeteredExecutor,
    steps: int,
    repeat: int,
    checkpoint_steps: int,
) -> dict[str, tuple[int, list[Sample]]]:
    """Warm up each variant once, then ``repeat`` runs each, in alternating order."""
    dags = definitions(steps)
    for variant in VARIANTS:
        await run_once(client, worker, executor, variant, steps, dags)
    samples: dict[str, list[Sample]] = {v: [] for v in VARIANTS}
    for rep in range(repeat):
        for variant in VARIANTS if rep % 2 == 0 else VARIANTS[::-1]:
            samples[variant].append(await run_once(client, worker, executor, variant, steps, dags))
    out = {v: (steps, s) for v, s in samples.items()}
    if checkpoint_steps:
        timed_out = [
            await run_once(client, worker, executor, CHECKPOINT, checkpoint_steps, dags)
            for _ in range(repeat)
        ]
        out[CHECKPOINT] = (checkpoint_steps, timed_out)
    return out


def report(results: dict[str, tuple[int, list[Sample]]], repeat: int) -> None:
    """Print the table and the ratios."""
    print(f"\nmedian of {repeat} runs each (wall time from start to result)\n")
    print(
        f"{'variant':<20} {'steps':>5} {'s':>7} {'ms/step':>8} {'workflow CPU ms':>15} "
        f"{'events':>7} {'tasks':>6}"
    )
    per_step: dict[str, float] = {}
    for variant, (steps, samples) in results.items():
        wall = median([s.wall for s in samples])
        per_step[variant] = wall * 1000 / steps
        cpu = median([s.workflow_cpu for s in samples]) * 1000
        events = median([s.events for s in samples])
        tasks = median([s.tasks for s in samples])
        print(
            f"{variant:<20} {steps:>5} {wall:>7.3f} {per_step[variant]:>8.1f} {cpu:>15.0f} "
            f"{events:>7.0f} {tasks:>6.0f}"
        )
    local = per_step["DagRun, local"]
    print(
        f"\nratio DagRun local / hand-written local: {local / per_step['hand, local']:.2f}"
        f"\nratio DagRun local / hand-written activity chain: "
        f"{local / per_step['hand, activity']:.2f}"
        f"\nratio DagRun local / DagRun activity: {local / per_step['DagRun, activity']:.2f}"
    )
    verdict = "met" if local <= TARGET_MS else "NOT MET"
    print(f"DagRun local: {local:.1f} ms/step, target <= {TARGET_MS:.0f} ms/step: {verdict}")


async def main() -> None:
    """Measure the variants and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="steps in the chain")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per variant")
    parser.add_argument(
        "--checkpoint-steps",
        type=int,
        default=5,
        help="steps of the local chain with a timer after each step (0: leave it out)",
    )
    args = parser.parse_args()
    print(machine())
    async with dev_server() as client:
        executor = MeteredExecutor()
        worker = bench_worker(
            client, extra_workflows=[ChainWorkflow, LocalChainWorkflow], executor=executor
        )
        async with running(worker):
            results = await measure(
                client, worker, executor, args.steps, args.repeat, args.checkpoint_steps
            )
    report(results, args.repeat)


if __name__ == "__main__":
    run_script(main)
