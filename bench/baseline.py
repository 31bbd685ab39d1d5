"""Hand-written Temporal workflows for the shapes in bench_engine.py: what a Temporal user
would write without dagflow, calling the same ``noop`` step activity with the same input
model, activity ids, summaries, timeouts and retry policy as DagRun uses for those shapes.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.scheduling import idempotency_key
    from workflows.types import StepInput, StepResult

STEP_TIMEOUT = timedelta(minutes=5)
"""dagflow's default start-to-close timeout of a step."""

RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=3,
    non_retryable_error_types=[],
)
"""dagflow's built-in step retry policy (3 attempts, exponential from 1 s, capped at 1 min)."""


class ShapeInput(BaseModel):
    """Size of a shape: steps in a chain, parallel steps in a fan-out, or layers x width.

    A pydantic model, as a Temporal user of the pydantic data converter would write it (a
    dataclass would make the converter build a new TypeAdapter for every workflow start,
    about 10 ms of the worker's CPU per run that DagRun's pydantic input does not pay).
    """

    model_config = ConfigDict(frozen=True)

    name: str
    size: int
    width: int = 1


def noop_input(name: str, key: str, value: Any) -> StepInput:
    """The input of the ``noop`` step ``key`` (first attempt) with ``with.value = value``, as
    DagRun builds it for a step of the definition ``name``."""
    workflow_id = workflow.info().workflow_id
    return StepInput(
        tenant="acme",
        workflow_id=workflow_id,
        definition=name,
        step=key,
        key=key,
        kind="noop",
        with_={"value": value},
        idempotency_key=idempotency_key(workflow_id, key, 1),
    )


async def step(name: str, key: str, value: Any) -> Any:
    """Run the ``noop`` step ``key`` with ``with.value = value``; return its output."""
    result = await workflow.execute_activity(
        "noop",
        noop_input(name, key, value),
        activity_id=key,
        summary=key,
        start_to_close_timeout=STEP_TIMEOUT,
        retry_policy=RETRY,
        result_type=StepResult,
    )
    return result.output


@workflow.defn
class ChainWorkflow:
    """s0 -> s1 -> ... : each step gets the one before's output plus one."""

    @workflow.run
    async def run(self, arg: ShapeInput) -> Any:
        value = await step(arg.name, "s0", 0)
        for i in range(1, arg.size):
            value = await step(arg.name, f"s{i}", value + 1)
        return value


@workflow.defn
class FanOutWorkflow:
    """root -> m0..m(n-1) in parallel -> join."""

    @workflow.run
    async def run(self, arg: ShapeInput) -> Any:
        root = await step(arg.name, "root", 0)
        middle = await asyncio.gather(*(step(arg.name, f"m{i}", root + i) for i in range(arg.size)))
        return await step(arg.name, "join", middle[0] + middle[-1])


@workflow.defn
class LayersWorkflow:
    """``size`` layers of ``width`` steps; each layer starts when the whole layer before is done."""

    @workflow.run
    async def run(self, arg: ShapeInput) -> Any:
        values = list(range(arg.width))
        for layer in range(arg.size):
            if layer:
                values = [v + 1 for v in values]
            values = list(
                await asyncio.gather(
                    *(step(arg.name, f"l{layer}_{j}", v) for j, v in enumerate(values))
                )
            )
        return values


def dag_needs(depth: int, width: int) -> dict[str, list[str]]:
    """The steps of the ``dag`` shape, in layer order, with their needs.

    ``depth`` layers of ``width`` steps ``l{layer}_{j}``; a step of layer L > 0 needs three
    steps of layer L - 1 (``j``, ``j + 1`` and ``j + 7`` modulo the width, without repeats).
    The first need gives the value: ``l{L}_{j}`` outputs ``j + L``.
    """
    needs: dict[str, list[str]] = {}
    for layer in range(depth):
        for j in range(width):
            before: list[str] = []
            if layer:
                for k in (j, (j + 1) % width, (j + 7) % width):
                    if f"l{layer - 1}_{k}" not in before:
                        before.append(f"l{layer - 1}_{k}")
            needs[f"l{layer}_{j}"] = before
    return needs


@workflow.defn
class DagWorkflow:
    """The ``dag`` shape written by hand: one task per step that awaits its needs' tasks."""

    @workflow.run
    async def run(self, arg: ShapeInput) -> Any:
        tasks: dict[str, asyncio.Task[Any]] = {}

        async def one(key: str, needs: list[str]) -> Any:
            values = [await tasks[n] for n in needs]
            value = values[0] + 1 if values else int(key.split("_")[1])
            return await step(arg.name, key, value)

        for key, needs in dag_needs(arg.size, arg.width).items():
            tasks[key] = asyncio.create_task(one(key, needs))
        return list(
            await asyncio.gather(*(tasks[f"l{arg.size - 1}_{j}"] for j in range(arg.width)))
        )
