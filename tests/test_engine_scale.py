"""No history limits: continue-as-new for long runs, child batches for big for_each lists.

These run with small limits so they stay quick; bench/bench_scale.py runs the full sizes
(a 1,000-step chain, a for_each over 5,000 items) against the default limits.
"""

from __future__ import annotations

import json

from temporalio.client import Client, WorkflowHistory

from tests.engine import chain_definition, dag_worker, eventually, progress, start_dag
from tests.history import history_lengths
from tests.scenarios import SCENARIOS, histories_of
from tests.steps import Probe
from workflows.dag_run import FOR_EACH_WINDOW


async def test_long_chain_continues_as_new_and_keeps_outputs(client: Client) -> None:
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(client, w, chain_definition(60), history_limit=100)
        assert await handle.result() == 59
        lengths = await history_lengths(client, handle.id, handle.first_execution_run_id or "")
        assert len(lengths) >= 3, lengths
        assert max(lengths.values()) <= 100 + 30, lengths
        p = await progress(handle)
        assert p.continued == len(lengths) - 1
        assert all(s.status.value == "succeeded" for s in p.steps)


async def test_big_for_each_runs_in_child_batches(client: Client) -> None:
    probe = Probe()
    async with dag_worker(client, probe.activities()) as w:
        handle = await start_dag(
            client,
            w,
            {
                "name": "big-fan",
                "steps": {
                    "reserve": {
                        "uses": "noop",
                        "for_each": "${{ input.items }}",
                        "concurrency": 50,
                        "with": {"value": "${{ item * 2 }}"},
                    }
                },
                "output": "${{ steps.reserve.output }}",
            },
            {"items": list(range(450))},
            batch_size=100,
        )
        assert await handle.result() == [i * 2 for i in range(450)]
        assert probe.peak <= 50
        lengths = await history_lengths(client, handle.id, handle.first_execution_run_id or "")
        batches = [wid for wid in lengths if "/reserve[" in wid]
        assert len(batches) == 5, lengths
        assert max(lengths.values()) < 1000
        child_id, child_run = batches[0].split("@")
        started = await client.get_workflow_handle(child_id, run_id=child_run).fetch_history()
        payload = started.events[0].workflow_execution_started_event_attributes.input.payloads[0]
        batch = json.loads(payload.data)
        assert batch["run"]["input"] is None, "a batch gets the run input only if it reads it"
        assert len(batch["items"]) == len(batch["indices"]) <= 100


async def test_parked_step_survives_continue_as_new(client: Client) -> None:
    probe = Probe()
    definition = chain_definition(30)
    definition["steps"]["gate"] = {
        "uses": "boom",
        "needs": ["s29"],
        "on_error": "manual",
    }
    definition["output"] = "${{ [steps.s29.output, steps.gate.output] }}"
    async with dag_worker(client, probe.activities()) as w:
        handle = await start_dag(client, w, definition, history_limit=60)

        async def gate_parked() -> bool:
            p = await progress(handle)
            return any(s.step == "gate" and s.status.value == "needs_attention" for s in p.steps)

        await eventually(gate_parked, within=30)
        assert (await progress(handle)).continued >= 1
        await handle.execute_update("retry_step", {"step": "gate", "with": {"ok": True}})
        assert await handle.result() == [29, {"fixed": True, "key": "gate"}]
        assert probe.calls["s0"] == 1


def first_task_schedules(history: WorkflowHistory) -> int:
    """Activities scheduled by a run's first workflow task."""
    count, tasks = 0, 0
    for event in history.events:
        if event.HasField("workflow_task_completed_event_attributes"):
            tasks += 1
        elif tasks > 1:
            break
        if tasks == 1 and event.HasField("activity_task_scheduled_event_attributes"):
            count += 1
    return count


async def test_a_for_each_without_concurrency_runs_a_window_of_items_per_workflow(
    client: Client,
) -> None:
    """The run and each batch schedule at most FOR_EACH_WINDOW items in one workflow task (all
    250 of a batch at once took over the SDK's 2 s deadlock limit on a loaded machine)."""
    async with dag_worker(client, Probe().activities()) as w:
        handle = await SCENARIOS["for_each_window"](client, w)
        assert await handle.result() == [60, 130]
        histories = await histories_of(client, handle)
    by_id = {h.workflow_id: h for h in histories}
    run = by_id[handle.id]
    batch = next(h for wid, h in by_id.items() if wid.endswith("/batched[0-99]#1"))
    assert first_task_schedules(run) == FOR_EACH_WINDOW, "the direct step's first window"
    assert first_task_schedules(batch) == FOR_EACH_WINDOW
    scheduled = sum(e.HasField("activity_task_scheduled_event_attributes") for e in batch.events)
    assert scheduled == 100, "every item of the batch ran in the end"
