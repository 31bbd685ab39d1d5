"""The hand-written local-activity chain for bench_local.py: what a Temporal user would write
to run short steps as local activities, with the same ``noop`` activity, input model, activity
ids, summaries, timeouts and retry policy as DagRun's local steps use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from baseline import RETRY, STEP_TIMEOUT, noop_input

    from workflows.definition import LOCAL_RETRY_THRESHOLD
    from workflows.types import StepResult


@dataclass(frozen=True)
class LocalChainInput:
    """A chain of ``size`` steps; with ``checkpoint``, a 1 ms timer after each step, so the
    workflow task completes and records the step's marker before the next step starts."""

    name: str
    size: int
    checkpoint: bool = False


async def local_step(name: str, key: str, value: Any) -> Any:
    """Run the ``noop`` step ``key`` as a local activity with ``with.value = value``."""
    result = await workflow.execute_local_activity(
        "noop",
        noop_input(name, key, value),
        activity_id=key,
        summary=key,
        start_to_close_timeout=STEP_TIMEOUT,
        retry_policy=RETRY,
        local_retry_threshold=LOCAL_RETRY_THRESHOLD,
        result_type=StepResult,
    )
    return result.output


@workflow.defn
class LocalChainWorkflow:
    """s0 -> s1 -> ... as local activities: each step gets the one before's output plus one."""

    @workflow.run
    async def run(self, arg: LocalChainInput) -> Any:
        value = None
        for i in range(arg.size):
            value = await local_step(arg.name, f"s{i}", 0 if i == 0 else value + 1)
            if arg.checkpoint:
                await workflow.sleep(timedelta(milliseconds=1))
        return value
