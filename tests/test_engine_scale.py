"""No history limits: continue-as-new for long runs, child batches for big for_each lists.

These run with small limits so they stay quick; bench/bench_scale.py runs the full sizes
(a 1,000-step chain, a for_each over 5,000 items) against the default limits.
"""

from __future__ import annotations

import json

from temporalio.client import Client

from tests.engine import chain_definition, dag_worker, eventually, progress, start_dag
from tests.history import history_lengths
from tests.steps import Probe


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
