"""DagRun against hand-written Temporal workflows doing the same steps, on one server and worker.

Run: ``python bench/bench_engine.py [--repeat N] [--shapes chain fan_out layers]``.

Shapes: a 50-step chain, a 200-way fan-out and join, and 10 layers of 10 steps where every
step needs the whole layer before. Every step is the same ``noop`` activity, with the same
input, activity id, summary, timeout and retry policy in both variants (bench/baseline.py), on
the same worker (configured as ``build_worker`` does, so both pay for the
StepAttemptInterceptor). For each shape, one warm-up run of each variant, then ``--repeat``
runs of each, interleaved (ABBA), and the median wall time from start to result. Target: DagRun
within 1.3x of the hand-written workflow on every shape. A second table gives the CPU time of
the workflow code alone (the activations), of the whole process, and the history length.
Exits 0 whatever the ratios (it is a measurement; the table says which met the target), and 1
only if a run gave a wrong output.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from baseline import (
    RETRY,
    STEP_TIMEOUT,
    ChainWorkflow,
    FanOutWorkflow,
    LayersWorkflow,
    ShapeInput,
)
from common import (
    MeteredExecutor,
    bench_worker,
    dev_server,
    machine,
    median,
    run_script,
    running,
    start_dag,
    timed,
)
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from workflows.definition import BUILTIN_RETRY, DEFAULT_STEP_TIMEOUT, Definition
from workflows.scheduling import retry_policy
from workflows.search_attributes import run_attributes

TARGET = 1.3
TENANT = "acme"


@dataclass(frozen=True)
class Shape:
    """One benchmark shape: the dagflow definition and its hand-written twin."""

    name: str
    definition: Definition
    baseline: Callable[..., Any]
    arg: ShapeInput
    expected: Any


def _noop(value: str | int, needs: list[str] | None = None) -> dict[str, Any]:
    return {"uses": "noop", "needs": needs or [], "with": {"value": value}}


def chain(n: int = 50) -> Shape:
    """s0 -> s1 -> ... -> s(n-1); each step's value is the one before's output plus one."""
    steps = {"s0": _noop(0)}
    for i in range(1, n):
        steps[f"s{i}"] = _noop(f"${{{{ steps.s{i - 1}.output + 1 }}}}", [f"s{i - 1}"])
    name = f"bench-chain-{n}"
    definition = {"name": name, "steps": steps, "output": f"${{{{ steps.s{n - 1}.output }}}}"}
    return Shape(
        "chain",
        Definition.model_validate(definition),
        ChainWorkflow.run,
        ShapeInput(name=name, size=n),
        n - 1,
    )


def fan_out(n: int = 200) -> Shape:
    """root -> m0..m(n-1) in parallel -> join."""
    middle = [f"m{i}" for i in range(n)]
    steps = {"root": _noop(0)}
    steps.update(
        {m: _noop(f"${{{{ steps.root.output + {i} }}}}", ["root"]) for i, m in enumerate(middle)}
    )
    steps["join"] = _noop(
        f"${{{{ steps.{middle[0]}.output + steps.{middle[-1]}.output }}}}", middle
    )
    name = f"bench-fan-out-{n}"
    definition = {"name": name, "steps": steps, "output": "${{ steps.join.output }}"}
    return Shape(
        "fan_out",
        Definition.model_validate(definition),
        FanOutWorkflow.run,
        ShapeInput(name=name, size=n),
        n - 1,
    )


def layers(depth: int = 10, width: int = 10) -> Shape:
    """``depth`` layers of ``width`` steps; each step needs every step of the layer before."""
    steps: dict[str, Any] = {}
    for layer in range(depth):
        before = [f"l{layer - 1}_{k}" for k in range(width)] if layer else []
        for j in range(width):
            value = f"${{{{ steps.l{layer - 1}_{j}.output + 1 }}}}" if layer else j
            steps[f"l{layer}_{j}"] = _noop(value, before)
    last = ", ".join(f"steps.l{depth - 1}_{j}.output" for j in range(width))
    name = f"bench-layers-{depth}x{width}"
    definition = {"name": name, "steps": steps, "output": f"${{{{ [{last}] }}}}"}
    return Shape(
        "layers",
        Definition.model_validate(definition),
        LayersWorkflow.run,
        ShapeInput(name=name, size=depth, width=width),
        [depth - 1 + j for j in range(width)],
    )


SHAPES: dict[str, Callable[[], Shape]] = {"chain": chain, "fan_out": fan_out, "layers": layers}


@dataclass
class Sample:
    """One run: wall seconds; CPU seconds of the workflow code, and of this whole process
    (client, worker, activities); history events."""

    wall: float
    workflow_cpu: float
    cpu: float
    events: int = 0


async def _run(
    client: Client, worker: Worker, executor: MeteredExecutor, shape: Shape, variant: str
) -> tuple[Sample, WorkflowHandle[Any, Any]]:
    async def start_and_wait() -> tuple[Any, WorkflowHandle[Any, Any]]:
        if variant == "dagrun":
            handle = await start_dag(client, worker, shape.definition, tenant=TENANT)
        else:
            handle = await client.start_workflow(
                shape.baseline,
                shape.arg,
                id=f"{TENANT}/{shape.arg.name}/{uuid.uuid4()}",
                task_queue=worker.task_queue,
                search_attributes=run_attributes(TENANT, shape.arg.name, 1),
            )
        return await handle.result(), handle

    cpu, workflow_cpu = time.process_time(), executor.cpu
    wall, (output, handle) = await timed(start_and_wait)
    cpu, workflow_cpu = time.process_time() - cpu, executor.cpu - workflow_cpu
    if output != shape.expected:
        raise SystemExit(f"{shape.name}/{variant}: output {output!r}, expected {shape.expected!r}")
    return Sample(wall, workflow_cpu, cpu), handle


async def measure(
    client: Client, worker: Worker, executor: MeteredExecutor, shape: Shape, repeat: int
) -> dict[str, list[Sample]]:
    """One warm-up run per variant, then ``repeat`` runs of each, interleaved ABBA."""
    variants = ("hand", "dagrun")
    for variant in variants:
        await _run(client, worker, executor, shape, variant)
    samples: dict[str, list[Sample]] = {v: [] for v in variants}
    for rep in range(repeat):
        for variant in variants if rep % 2 == 0 else variants[::-1]:
            sample, handle = await _run(client, worker, executor, shape, variant)
            sample.events = len((await handle.fetch_history()).events)
            samples[variant].append(sample)
    return samples


def _report(results: dict[str, dict[str, list[Sample]]], repeat: int) -> None:
    print(f"\nmedian of {repeat} runs each (wall seconds, start to result)\n")
    print(f"{'shape':<8} {'hand-written s':>15} {'DagRun s':>9} {'ratio':>6}  target <= {TARGET}")
    over = []
    for name, samples in results.items():
        hand = median([s.wall for s in samples["hand"]])
        dag = median([s.wall for s in samples["dagrun"]])
        ratio = dag / hand
        if ratio > TARGET:
            over.append(name)
        verdict = "met" if ratio <= TARGET else "NOT MET"
        print(f"{name:<8} {hand:>15.3f} {dag:>9.3f} {ratio:>6.2f}  {verdict}")
    print("\nmedians per run: CPU ms of the workflow code (activations) and of the whole worker")
    print("process (client, worker, activities); history events\n")
    head = ("shape", "workflow CPU hand", "DagRun", "process CPU hand", "DagRun", "events hand")
    print(
        f"{head[0]:<8} {head[1]:>17} {head[2]:>7} {head[3]:>16} {head[4]:>7} "
        f"{head[5]:>11} {'DagRun':>7}"
    )
    for name, samples in results.items():
        row = [
            median([getattr(s, field) for s in samples[variant]]) * scale
            for field, scale in (("workflow_cpu", 1000), ("cpu", 1000), ("events", 1))
            for variant in ("hand", "dagrun")
        ]
        print(
            f"{name:<8} {row[0]:>17.0f} {row[1]:>7.0f} {row[2]:>16.0f} {row[3]:>7.0f} "
            f"{row[4]:>11.0f} {row[5]:>7.0f}"
        )
    if over:
        print(f"\nOVER TARGET ({TARGET}): {', '.join(over)}")
    else:
        print(f"\nevery ratio met the target ({TARGET})")


async def main() -> None:
    """Measure every chosen shape and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="measured runs per variant")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    args = parser.parse_args()
    # The baseline copies dagflow's step defaults; check they still agree.
    assert retry_policy(BUILTIN_RETRY)[0] == RETRY, "baseline RETRY drifted from dagflow's"
    assert DEFAULT_STEP_TIMEOUT == STEP_TIMEOUT, "baseline STEP_TIMEOUT drifted from dagflow's"
    shapes = [SHAPES[name]() for name in args.shapes]
    print(machine())
    results: dict[str, dict[str, list[Sample]]] = {}
    async with dev_server() as client:
        executor = MeteredExecutor()
        worker = bench_worker(
            client,
            extra_workflows=[ChainWorkflow, FanOutWorkflow, LayersWorkflow],
            executor=executor,
        )
        async with running(worker):
            for shape in shapes:
                print(f"{shape.name}: {len(shape.definition.steps)} steps ...", flush=True)
                results[shape.name] = await measure(client, worker, executor, shape, args.repeat)
    _report(results, args.repeat)


if __name__ == "__main__":
    run_script(main)
