"""Representative runs whose histories are kept under tests/histories and replayed.

Each scenario drives one run to its end and returns the run's handle. `python -m
tests.scenarios` records them all afresh (on its own dev server) into tests/histories;
`python -m tests.scenarios NAME...` records only those (a new scenario), leaving the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowHistory
from temporalio.worker import Worker

from tests.engine import eventually, progress, start_dag

HISTORIES = Path(__file__).parent / "histories"
"""One JSON file per run: ``{"workflow_id": ..., "history": <history as JSON>}``."""

Scenario = Callable[[Client, Worker], Awaitable[WorkflowHandle[Any, Any]]]


async def parallel(client: Client, worker: Worker) -> WorkflowHandle[Any, Any]:
    handle = await start_dag(
        client,
        worker,
        {
            "name": "parallel",
            "max_parallel": 3,
            "steps": {
                "src": {"uses": "transform", "with": {"value": [1, 2, 3]}},
                **{
                    f"p{i}": {"uses": "noop", "needs": ["src"], "with": {"value": i}}
                    for i in range(5)
                },
                "check": {
                    "uses": "validate",
                    "needs": ["p0"],
                    "with": {"value": "${{ steps.p0.output }}", "schema": {"type": "integer"}},
                },
                "skipped": {"uses": "noop", "needs": ["src"], "if": "size(steps.src.output) > 9"},
                "join": {
                    "uses": "noop",
                    "needs": ["p1", "p2", "p3", "p4", "check", "skipped"],
                    "trigger_rule": "none_failed",
                },
                "pause": {"uses": "wait", "with": {"duration": "50ms"}},
            },
            "output": "${{ steps.join.output }}",
        },
    )
    await handle.result()
    return handle


async def for_each(client: Client, worker: Worker) -> WorkflowHandle[Any, Any]:
    handle = await start_dag(
        client,
        worker,
        {
            "name": "for-each",
            "steps": {
                "small": {
                    "uses": "noop",
                    "for_each": "${{ input.small }}",
                    "concurrency": 2,
                    "with": {"value": "${{ item }}"},
                },
                "big": {
                    "uses": "noop",
                    "for_each": "${{ input.big }}",
                    "concurrency": 20,
                    "with": {"value": "${{ index }}"},
                },
            },
            "output": "${{ [size(steps.small.output), size(steps.big.output)] }}",
        },
        {"small": ["a", "b", "c"], "big": list(range(45))},
        batch_size=20,
    )
    await handle.result()
    return handle


async def for_each_window(client: Client, worker: Worker) -> WorkflowHandle[Any, Any]:
    """for_each steps without concurrency over more items than FOR_EACH_WINDOW: one in the run
    itself, one in batches (the first batch over the window)."""
    handle = await start_dag(
        client,
        worker,
        {
            "name": "for-each-window",
            "steps": {
                "direct": {
                    "uses": "noop",
                    "for_each": "${{ input.direct }}",
                    "with": {"value": "${{ item }}"},
                },
                "batched": {
                    "uses": "noop",
                    "for_each": "${{ input.batched }}",
                    "with": {"value": "${{ index }}"},
                },
            },
            "output": "${{ [size(steps.direct.output), size(steps.batched.output)] }}",
        },
        {"direct": list(range(60)), "batched": list(range(130))},
        batch_size=100,
    )
    await handle.result()
    return handle


async def manual_retry(client: Client, worker: Worker) -> WorkflowHandle[Any, Any]:
    handle = await start_dag(
        client,
        worker,
        {
            "name": "manual",
            "steps": {
                "charge": {"uses": "boom", "on_error": "manual"},
                "other": {"uses": "boom", "on_error": "manual"},
                "after": {"uses": "noop", "needs": ["charge"]},
                "approval": {"uses": "wait", "with": {"event": "approved", "timeout": "1h"}},
            },
        },
    )

    async def both_parked() -> bool:
        p = await progress(handle)
        return sum(s.status.value == "needs_attention" for s in p.steps) == 2

    await eventually(both_parked)
    await handle.signal("retry_step", {"step": "charge", "with": {"ok": True}})
    await handle.execute_update("complete_step", {"step": "other", "output": 1})
    await handle.signal("send_event", {"name": "approved", "payload": {"by": "ann"}})
    await handle.result()
    return handle


async def continue_as_new(client: Client, worker: Worker) -> WorkflowHandle[Any, Any]:
    steps: dict[str, Any] = {"s0": {"uses": "noop", "with": {"value": 0}}}
    for i in range(1, 25):
        steps[f"s{i}"] = {"uses": "noop", "needs": [f"s{i - 1}"]}
    handle = await start_dag(client, worker, {"name": "long", "steps": steps}, history_limit=40)
    await handle.result()
    return handle


async def failure(client: Client, worker: Worker) -> WorkflowHandle[Any, Any]:
    handle = await start_dag(
        client,
        worker,
        {
            "name": "failing",
            "steps": {
                "primary": {"uses": "boom", "on_error": {"fallback": "backup"}},
                "backup": {"uses": "noop"},
                "soft": {"uses": "boom", "on_error": "continue"},
                "hard": {"uses": "boom", "needs": ["primary"]},
                "slow": {"uses": "slow", "with": {"seconds": 5}},
            },
        },
    )
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    return handle


async def child(client: Client, worker: Worker) -> WorkflowHandle[Any, Any]:
    from workflows.definition import Definition

    inner = Definition.model_validate(
        {"name": "inner", "steps": {"x": {"uses": "noop", "with": {"value": "${{ input }}"}}}}
    )
    handle = await start_dag(
        client,
        worker,
        {
            "name": "outer",
            "steps": {"call": {"uses": "workflow", "with": {"definition": "inner", "input": 5}}},
            "output": "${{ steps.call.output }}",
        },
        library={"inner": inner},
    )
    await handle.result()
    return handle


async def command(client: Client, worker: Worker) -> WorkflowHandle[Any, Any]:
    """A DagCommand run: the first run completes, the second fails, the third never starts."""
    from workflows.command import command_workflow_id
    from workflows.definition import Definition
    from workflows.types import COMMAND_WORKFLOW_TYPE, DagCommandInput, DagRunInput, PlannedRun

    tenant, command_id = "acme", f"c-{uuid.uuid4().hex[:8]}"
    bound: list[tuple[Literal["instance", "tenant"], dict[str, Any]]] = [
        ("instance", {"name": "audit", "steps": {"a": {"uses": "noop", "with": {"value": 1}}}}),
        (
            "tenant",
            {
                "name": "strict",
                "steps": {
                    "check": {
                        "uses": "validate",
                        "with": {"value": "${{ input.n }}", "schema": {"type": "string"}},
                    }
                },
            },
        ),
        ("tenant", {"name": "ship", "steps": {"a": {"uses": "noop"}}}),
    ]
    plan = [
        PlannedRun(
            workflow_id=f"{tenant}/{definition['name']}/{command_id}.{n}",
            scope=scope,
            binding=n,
            run=DagRunInput(
                definition=Definition.model_validate(definition),
                tenant=tenant,
                version=1,
                command="order.created",
            ),
            memo={"request_hash": "0" * 64},
        )
        for n, (scope, definition) in enumerate(bound, 1)
    ]
    handle = await client.start_workflow(
        COMMAND_WORKFLOW_TYPE,
        DagCommandInput(
            tenant=tenant, type="order.created", id=command_id, input={"n": 1}, runs=plan
        ),
        id=command_workflow_id(tenant, command_id),
        task_queue=worker.task_queue,
    )
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    return handle


async def local(client: Client, worker: Worker) -> WorkflowHandle[Any, Any]:
    """Local steps: a chain that continues as new, a retried step, a parked one retried by an
    operator, a timed-out one, slow ones that fill a task, beside a regular step and a
    for_each."""
    steps: dict[str, Any] = {"l0": {"uses": "noop", "with": {"value": 0}}}
    for i in range(1, 12):
        steps[f"l{i}"] = {
            "uses": "noop",
            "needs": [f"l{i - 1}"],
            "with": {"value": f"${{{{ steps.l{i - 1}.output + 1 }}}}"},
        }
    steps.update(
        {
            "regular": {"uses": "noop", "execution": "activity", "with": {"value": "r"}},
            "retried": {
                "uses": "flaky",
                "with": {"fail_times": 1},
                "retry": {"backoff": "fixed", "initial_interval": "100ms"},
            },
            "parked": {"uses": "boom", "on_error": "manual", "summary": "Charge"},
            "late": {
                "uses": "slow",
                "timeout": "100ms",
                "with": {"seconds": 2},
                "retry": {"max_attempts": 2, "backoff": "fixed", "initial_interval": "100ms"},
                "on_error": "continue",
            },
            "items": {"uses": "noop", "for_each": [1, 2], "with": {"value": "${{ item }}"}},
            # a task that has run local steps for 1s runs the next one as an activity
            "w0": {"uses": "slow", "with": {"seconds": 0.6}},
            "w1": {"uses": "slow", "needs": ["w0"], "with": {"seconds": 0.6}},
            "w2": {"uses": "slow", "needs": ["w1"], "with": {"seconds": 0.6}},
        }
    )
    handle = await start_dag(
        client,
        worker,
        {
            "name": "local",
            "defaults": {"execution": "local"},
            "steps": steps,
            "output": "${{ [steps.l11.output, steps.parked.output.fixed] }}",
        },
        history_limit=30,
    )

    async def parked() -> bool:
        p = await progress(handle)
        return any(s.step == "parked" and s.status.value == "needs_attention" for s in p.steps)

    await eventually(parked)
    await handle.execute_update("retry_step", {"step": "parked", "with": {"ok": True}})
    await handle.result()
    return handle


SCENARIOS: dict[str, Scenario] = {
    "parallel": parallel,
    "for_each": for_each,
    "for_each_window": for_each_window,
    "manual_retry": manual_retry,
    "continue_as_new": continue_as_new,
    "failure": failure,
    "child": child,
    "command": command,
    "local": local,
}


async def histories_of(client: Client, handle: WorkflowHandle[Any, Any]) -> list[WorkflowHistory]:
    """The history of every run of the scenario: its continue-as-new chain and the child
    workflows it started."""
    out: list[WorkflowHistory] = []
    todo = [(handle.id, handle.first_execution_run_id)]
    while todo:
        wid, rid = todo.pop(0)
        history = await client.get_workflow_handle(wid, run_id=rid).fetch_history()
        out.append(history)
        for event in history.events:
            if event.HasField("workflow_execution_continued_as_new_event_attributes"):
                attrs = event.workflow_execution_continued_as_new_event_attributes
                todo.append((wid, attrs.new_execution_run_id))
            if event.HasField("child_workflow_execution_started_event_attributes"):
                execution = event.child_workflow_execution_started_event_attributes
                todo.append((execution.workflow_execution.workflow_id, None))
    return out


async def record(names: list[str]) -> None:
    """Run the named scenarios on a fresh dev server and store their histories."""
    from temporalio.testing import WorkflowEnvironment

    from starter.devserver import temporal_binary
    from tests.engine import dag_worker
    from tests.steps import Probe
    from worker.client import DATA_CONVERTER
    from workflows import search_attributes

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=search_attributes.ALL,
        data_converter=DATA_CONVERTER,
    )
    try:
        async with dag_worker(env.client, Probe().activities()) as worker:
            for name in names:
                handle = await SCENARIOS[name](env.client, worker)
                for i, history in enumerate(await histories_of(env.client, handle)):
                    stored = {"workflow_id": history.workflow_id, "history": history.to_json_dict()}
                    (HISTORIES / f"{name}.{i}.json").write_text(json.dumps(stored))
                print(f"recorded {name}")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    wanted = sys.argv[1:] or list(SCENARIOS)
    unknown = sorted(set(wanted) - set(SCENARIOS))
    if unknown:
        sys.exit(f"no scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    HISTORIES.mkdir(exist_ok=True)
    for name in wanted:
        for old in HISTORIES.glob(f"{name}.*.json"):
            old.unlink()
    asyncio.run(record(wanted))
