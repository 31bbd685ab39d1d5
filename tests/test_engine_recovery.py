"""on_error modes and manual recovery, driven the way an operator would: with the plain
`temporal` CLI (signals, queries) and with the Updates."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError

from starter.devserver import temporal_binary
from tests.engine import dag_worker, eventually, progress, start_dag
from tests.steps import Probe
from workflows.search_attributes import DAG_STATUS
from workflows.types import RunSnapshot


async def temporal_cli(address: str, *args: str) -> str:
    """Run the plain `temporal` CLI against the test server, as an operator would (without
    blocking the event loop the in-process worker runs on)."""
    proc = await asyncio.create_subprocess_exec(
        temporal_binary(),
        *args,
        "--address",
        address,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def cli_progress(address: str, workflow_id: str) -> dict[str, Any]:
    out = await temporal_cli(
        address,
        "workflow",
        "query",
        "--workflow-id",
        workflow_id,
        "--name",
        "progress",
        "-o",
        "json",
    )
    return json.loads(out)["queryResult"][0]


async def cli_signal(address: str, workflow_id: str, name: str, body: dict[str, Any]) -> None:
    await temporal_cli(
        address,
        "workflow",
        "signal",
        "--workflow-id",
        workflow_id,
        "--name",
        name,
        "--input",
        json.dumps(body),
    )


async def parked(handle: WorkflowHandle[Any, Any], step: str) -> None:
    async def check() -> bool:
        p = await progress(handle)
        return any(s.step == step and s.status.value == "needs_attention" for s in p.steps)

    await eventually(check)


MANUAL = {
    "name": "payments",
    "steps": {
        "fetch": {"uses": "noop", "with": {"value": {"total": 12}}},
        "charge": {
            "uses": "boom",
            "needs": ["fetch"],
            "with": {"amount": "${{ steps.fetch.output.total }}"},
            "on_error": "manual",
        },
        "ship": {
            "uses": "noop",
            "needs": ["charge"],
            "with": {"value": "${{ steps.charge.output }}"},
        },
    },
    "output": "${{ steps.ship.output }}",
}


async def test_on_error_skip_keeps_the_error(client: Client) -> None:
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(
            client,
            w,
            {
                "name": "skip",
                "steps": {
                    "bad": {"uses": "boom", "on_error": "skip"},
                    "after": {"uses": "noop", "needs": ["bad"], "trigger_rule": "none_failed"},
                },
            },
        )
        await handle.result()
        bad, after = (await progress(handle)).steps
        assert bad.status.value == "skipped"
        assert bad.error == "Boom: boom at bad"
        assert after.status.value == "succeeded"


async def test_on_error_fail_names_the_step_and_reason(client: Client) -> None:
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(
            client,
            w,
            {"name": "fail", "steps": {"bad": {"uses": "boom"}, "other": {"uses": "noop"}}},
        )
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        cause = info.value.cause
        assert isinstance(cause, ApplicationError)
        assert cause.message == "step 'bad' failed: Boom: boom at bad"
        assert cause.details[0]["step"] == "bad"
        desc = await handle.describe()
        assert desc.typed_search_attributes.get(DAG_STATUS) == "Failed"


async def test_fallback_stands_in_and_unused_fallback_is_skipped(client: Client) -> None:
    probe = Probe()
    async with dag_worker(client, probe.activities()) as w:
        handle = await start_dag(
            client,
            w,
            {
                "name": "fallback",
                "steps": {
                    "primary": {"uses": "boom", "on_error": {"fallback": "backup"}},
                    "backup": {"uses": "noop", "with": {"value": "from backup"}},
                    "use": {
                        "uses": "noop",
                        "needs": ["primary"],
                        "with": {"value": "${{ steps.primary.output }}"},
                    },
                    "fine": {"uses": "noop", "on_error": {"fallback": "spare"}},
                    "spare": {"uses": "noop"},
                },
                "output": "${{ steps.use.output }}",
            },
        )
        assert await handle.result() == "from backup"
        steps = {s.step: s for s in (await progress(handle)).steps}
        assert steps["primary"].status.value == "succeeded"
        assert steps["primary"].fallback == "backup"
        assert steps["primary"].error == "Boom: boom at primary"
        assert steps["backup"].status.value == "succeeded"
        assert steps["spare"].status.value == "skipped"
        assert "spare" not in probe.calls


async def test_manual_park_then_retry_with_overrides_by_cli_signal(
    client: Client, temporal_address: str
) -> None:
    probe = Probe()
    async with dag_worker(client, probe.activities()) as w:
        handle = await start_dag(client, w, MANUAL)
        await parked(handle, "charge")
        desc = await handle.describe()
        assert desc.typed_search_attributes.get(DAG_STATUS) == "NeedsAttention"
        await eventually(lambda: _visible(client, handle.id))

        seen = await cli_progress(temporal_address, handle.id)
        assert seen["status"] == "needs_attention"
        charge = next(s for s in seen["steps"] if s["step"] == "charge")
        assert charge["status"] == "needs_attention"
        assert charge["error"] == "Boom: boom at charge"
        assert charge["attempts"] >= 1

        await cli_signal(
            temporal_address, handle.id, "retry_step", {"step": "charge", "with": {"ok": True}}
        )
        assert await handle.result() == {"fixed": True, "key": "charge"}
        assert probe.inputs["charge"][-1] == {"amount": 12, "ok": True}
        assert probe.calls["fetch"] == 1
        steps = {s.step: s for s in (await progress(handle)).steps}
        assert steps["charge"].status.value == "succeeded"
        assert steps["charge"].error is None
        desc = await handle.describe()
        assert desc.typed_search_attributes.get(DAG_STATUS) == "Completed"


async def cli_details(address: str, workflow_id: str) -> list[str]:
    """The run's current details (the Web UI's "Current Details"), by the plain CLI."""
    out = await temporal_cli(
        address, "workflow", "metadata", "--workflow-id", workflow_id, "-o", "json"
    )
    details: str = json.loads(out)["queryResult"][0]["currentDetails"]
    return details.splitlines()


async def test_current_details_show_the_parked_step_first(
    client: Client, temporal_address: str
) -> None:
    """The current details are made when asked for and show the state of that moment."""
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(client, w, MANUAL)
        await parked(handle, "charge")
        assert await cli_details(temporal_address, handle.id) == [
            "**needs_attention** · 1 succeeded, 1 needs_attention, 1 pending",
            "",
            "| step | status | attempts |",
            "|---|---|---|",
            "| charge | needs_attention | 1 |",
            "| fetch | succeeded | 1 |",
            "| ship | pending | 0 |",
        ]
        await handle.signal("skip_step", {"step": "charge"})
        await handle.result()
        details = await cli_details(temporal_address, handle.id)
        assert details[0] == "**completed** · 1 succeeded, 2 skipped"
        assert details[4:] == [  # ship needs charge, which was skipped
            "| charge | skipped | 1 |",
            "| ship | skipped | 0 |",
            "| fetch | succeeded | 1 |",
        ]


async def _visible(client: Client, workflow_id: str) -> bool:
    query = f'DagStatus = "NeedsAttention" AND WorkflowId = "{workflow_id}"'
    return [wf.id async for wf in client.list_workflows(query)] == [workflow_id]


async def test_manual_complete_by_cli_signal(client: Client, temporal_address: str) -> None:
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(client, w, MANUAL)
        await parked(handle, "charge")
        await cli_signal(
            temporal_address, handle.id, "complete_step", {"step": "charge", "output": {"paid": 1}}
        )
        assert await handle.result() == {"paid": 1}
        charge = next(s for s in (await progress(handle)).steps if s.step == "charge")
        assert (charge.status.value, charge.note) == ("succeeded", "completed by an operator")


async def test_manual_skip_by_cli_signal(client: Client, temporal_address: str) -> None:
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(client, w, MANUAL)
        await parked(handle, "charge")
        await cli_signal(temporal_address, handle.id, "skip_step", {"step": "charge"})
        await handle.result()
        steps = {s.step: s.status.value for s in (await progress(handle)).steps}
        assert steps == {"fetch": "succeeded", "charge": "skipped", "ship": "skipped"}


async def test_fail_run_by_cli_signal(client: Client, temporal_address: str) -> None:
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(client, w, MANUAL)
        await parked(handle, "charge")
        await cli_signal(temporal_address, handle.id, "fail_run", {"reason": "card revoked"})
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        cause = info.value.cause
        assert isinstance(cause, ApplicationError)
        assert (cause.type, cause.message) == (
            "FailedByOperator",
            "failed by an operator: card revoked",
        )
        charge = next(s for s in (await progress(handle)).steps if s.step == "charge")
        assert charge.status.value == "cancelled"


async def test_updates_validate_and_answer(client: Client) -> None:
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(client, w, MANUAL)
        await parked(handle, "charge")
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await handle.execute_update("retry_step", {"step": "nope"})
        assert "no step named 'nope'" in str(info.value.cause)
        assert (
            isinstance(info.value.cause, ApplicationError)
            and info.value.cause.type == "UnknownStep"
        )
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await handle.execute_update("skip_step", {"step": "fetch"})
        assert "step 'fetch' is not parked (status: succeeded)" in str(info.value.cause)
        ack = await handle.execute_update("retry_step", {"step": "charge", "with": {"ok": True}})
        assert ack == {"step": "charge", "action": "retry"}
        assert (await handle.result())["fixed"] is True


async def test_ignored_signal_for_a_step_that_is_not_parked(
    client: Client, temporal_address: str
) -> None:
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(client, w, MANUAL)
        await parked(handle, "charge")
        await cli_signal(temporal_address, handle.id, "skip_step", {"step": "fetch"})
        await cli_signal(
            temporal_address, handle.id, "complete_step", {"step": "charge", "output": 1}
        )
        assert await handle.result() == 1
        steps = {s.step: s.status.value for s in (await progress(handle)).steps}
        assert steps["fetch"] == "succeeded"


async def test_manual_for_each_retries_only_failed_items(client: Client) -> None:
    probe = Probe()
    async with dag_worker(client, probe.activities()) as w:
        handle = await start_dag(
            client,
            w,
            {
                "name": "items",
                "steps": {
                    "reserve": {
                        "uses": "boom",
                        "for_each": [True, True, False, True, False],
                        "with": {"ok": "${{ item }}"},
                        "on_error": "manual",
                    }
                },
                "output": "${{ steps.reserve.output }}",
            },
        )
        await parked(handle, "reserve")
        reserve = (await progress(handle)).steps[0]
        assert reserve.items_failed == [2, 4]
        assert reserve.items_done == 3
        assert reserve.error == "2 of 5 items failed; first: reserve[2]: Boom: boom at reserve[2]"
        await handle.execute_update("retry_step", {"step": "reserve", "with": {"ok": True}})
        out = await handle.result()
        assert [o["key"] for o in out] == [f"reserve[{i}]" for i in range(5)]
        assert probe.calls == {
            "reserve[0]": 1,
            "reserve[1]": 1,
            "reserve[2]": 2,
            "reserve[3]": 1,
            "reserve[4]": 2,
        }


async def test_update_via_temporal_cli(client: Client, temporal_address: str) -> None:
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(client, w, MANUAL)
        await parked(handle, "charge")
        out = await temporal_cli(
            temporal_address,
            "workflow",
            "update",
            "execute",
            "--workflow-id",
            handle.id,
            "--name",
            "complete_step",
            "--input",
            json.dumps({"step": "charge", "output": "by update"}),
        )
        assert "complete" in out
        assert await asyncio.wait_for(handle.result(), 30) == "by update"


async def test_rerun_reuses_succeeded_outputs_from_the_snapshot(client: Client) -> None:
    probe = Probe()
    definition = {
        "name": "rerun",
        "steps": {
            "fetch": {"uses": "noop", "with": {"value": 7}},
            "charge": {
                "uses": "flaky",
                "needs": ["fetch"],
                "with": {
                    "fail_times": 1,
                    "non_retryable": True,
                    "value": "${{ steps.fetch.output }}",
                },
            },
        },
        "output": "${{ [steps.fetch.output, steps.charge.output] }}",
    }
    async with dag_worker(client, probe.activities()) as w:
        first = await start_dag(client, w, definition, {"order": 1})
        with pytest.raises(WorkflowFailureError):
            await first.result()
        snapshot = await first.query("snapshot", result_type=RunSnapshot)
        assert snapshot.input == {"order": 1}
        assert snapshot.status.value == "failed"
        assert snapshot.steps["fetch"].output == 7
        assert snapshot.steps["charge"].status.value == "failed"

        again = await start_dag(client, w, definition, snapshot.input, reuse=snapshot.steps)
        assert await again.result() == [7, 7]
        assert probe.calls["fetch"] == 1
        assert probe.calls["charge"] == 2
        steps = {s.step: s for s in (await progress(again)).steps}
        assert steps["fetch"].note == "reused from the earlier run"
