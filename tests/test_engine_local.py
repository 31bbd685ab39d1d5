"""Steps with ``execution: local`` run as Temporal local activities and keep what a regular
step has: retries and timeouts, manual recovery, the idempotency key, attempts and errors in
``progress``, and a record of each result, by step id, in the run's history (a marker)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from tests.engine import chain_definition, dag_worker, eventually, progress, start_dag
from tests.steps import Probe
from worker.logs import ACTIVITY_LOGGER, quiet_step_failures
from workflows.dag_run import LOCAL_TASK_STEPS
from workflows.definition import Definition
from workflows.scheduling import idempotency_key
from workflows.types import StepInput, StepStatus

LOCAL_MARKER = "core_local_activity"
"""The marker name the SDK's core records a local activity's result under."""


def local_chain(n: int) -> dict[str, Any]:
    """``chain_definition(n)`` with every step local."""
    definition = chain_definition(n, name="local-chain")
    return {**definition, "defaults": {"execution": "local"}}


def markers(events: list[HistoryEvent]) -> list[dict[str, Any]]:
    """The local-activity markers of a history: activity id, attempt, summary, failure."""
    out = []
    for event in events:
        if not event.HasField("marker_recorded_event_attributes"):
            continue
        attrs = event.marker_recorded_event_attributes
        if attrs.marker_name != LOCAL_MARKER:
            continue
        data = json.loads(attrs.details["data"].payloads[0].data)
        result = attrs.details["result"].payloads if "result" in attrs.details else []
        out.append(
            {
                "id": data["activity_id"],
                "attempt": data["attempt"],
                "summary": json.loads(event.user_metadata.summary.data),
                "result": json.loads(result[0].data) if result else None,
                "failure": attrs.failure.message if attrs.HasField("failure") else None,
            }
        )
    return out


def scheduled_activities(events: list[HistoryEvent]) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_id
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


async def history(handle: WorkflowHandle[Any, Any]) -> list[HistoryEvent]:
    return list((await handle.fetch_history()).events)


# --- which steps run local ----------------------------------------------------------------------


AUTO = {"execution": "auto"}


def _runs_local(step: dict[str, Any], defaults: dict[str, Any] | None = None) -> bool:
    definition = Definition.model_validate(
        {"name": "d", "defaults": defaults or {}, "steps": {"s": step}}
    )
    return definition.runs_local(definition.steps["s"])


@pytest.mark.parametrize(
    ("step", "defaults", "local"),
    [
        ({"uses": "noop"}, None, False),  # the default is activity
        ({"uses": "noop", "execution": "local"}, None, True),
        ({"uses": "noop"}, {"execution": "local"}, True),
        ({"uses": "noop", "execution": "activity"}, {"execution": "local"}, False),
        ({"uses": "noop", "execution": "auto"}, None, False),  # 5m attempt timeout
        ({"uses": "noop", "execution": "auto", "timeout": "5s"}, None, True),
        ({"uses": "noop", "execution": "auto", "timeout": "6s"}, None, False),
        ({"uses": "noop", "timeout": "2s"}, AUTO, True),
        ({"uses": "noop"}, {"execution": "auto", "timeout": "1s"}, True),
        ({"uses": "noop", "timeout": "1s", "heartbeat_timeout": "1s"}, AUTO, False),
        ({"uses": "noop", "timeout": "1s", "task_queue": "gpu"}, AUTO, False),
        ({"uses": "noop", "timeout": "1s"}, {"execution": "auto", "task_queue": "gpu"}, False),
        ({"uses": "transform", "with": {"value": 1}}, {"execution": "local"}, False),
    ],
)
def test_which_steps_run_local(step: dict[str, Any], defaults: Any, local: bool) -> None:
    assert _runs_local(step, defaults) is local


# --- runs ---------------------------------------------------------------------------------------


async def test_a_local_chain_records_each_result_as_a_marker_named_after_its_step(
    client: Client,
) -> None:
    definition = local_chain(5)
    definition["steps"]["s2"]["summary"] = "the middle"
    async with dag_worker(client, Probe().activities()) as worker:
        handle = await start_dag(client, worker, definition)
        assert await handle.result() == 4
        p = await progress(handle)
    events = await history(handle)
    assert scheduled_activities(events) == []
    assert markers(events) == [
        {
            "id": f"s{i}",
            "attempt": 1,
            "summary": "s2: the middle" if i == 2 else f"s{i}",
            "result": {"output": i, "attempt": 1},
            "failure": None,
        }
        for i in range(5)
    ]
    assert [(s.step, s.status, s.attempts) for s in p.steps] == [
        (f"s{i}", StepStatus.SUCCEEDED, 1) for i in range(5)
    ]


async def test_local_and_regular_steps_mix_in_one_run(client: Client) -> None:
    definition = chain_definition(4, name="mixed")
    definition["steps"]["s1"]["execution"] = "local"
    definition["steps"]["s3"]["execution"] = "local"
    async with dag_worker(client, Probe().activities()) as worker:
        handle = await start_dag(client, worker, definition)
        assert await handle.result() == 3
    events = await history(handle)
    assert scheduled_activities(events) == ["s0", "s2"]
    assert [m["id"] for m in markers(events)] == ["s1", "s3"]


async def test_a_local_step_retries_under_its_policy_with_one_idempotency_key(
    client: Client,
) -> None:
    seen: list[tuple[int, str]] = []

    @activity.defn(name="wobbly")
    async def wobbly(inp: StepInput) -> Any:
        seen.append((activity.info().attempt, inp.idempotency_key))
        if len(seen) < 3:
            raise RuntimeError(f"not yet ({len(seen)})")
        return {"is_local": activity.info().is_local}

    definition = {
        "name": "wobbly",
        "steps": {
            "call": {
                "uses": "wobbly",
                "execution": "local",
                "retry": {"max_attempts": 3, "backoff": "fixed", "initial_interval": "100ms"},
            }
        },
        "output": "${{ steps.call.output }}",
    }
    async with dag_worker(client, [wobbly]) as worker:
        handle = await start_dag(client, worker, definition)
        assert await handle.result() == {"is_local": True}
        p = await progress(handle)
    key = idempotency_key(handle.id, "call", 1)
    assert seen == [(1, key), (2, key), (3, key)]
    assert p.steps[0].attempts == 3
    assert [(m["id"], m["attempt"]) for m in markers(await history(handle))] == [("call", 3)]


async def test_a_local_step_that_fails_for_good_fails_the_run_with_its_reason(
    client: Client,
) -> None:
    definition = {
        "name": "local-fail",
        "steps": {
            "charge": {
                "uses": "flaky",
                "execution": "local",
                "with": {"fail_times": 5},
                "retry": {"max_attempts": 2, "backoff": "fixed", "initial_interval": "100ms"},
            }
        },
    }
    async with dag_worker(client, Probe().activities()) as worker:
        handle = await start_dag(client, worker, definition)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        p = await progress(handle)
    assert str(failed.value.cause) == "StepFailed: step 'charge' failed: Flaky: flaky failure 2"
    assert (p.steps[0].status, p.steps[0].attempts) == (StepStatus.FAILED, 2)
    assert p.steps[0].error == "Flaky: flaky failure 2"
    recorded = markers(await history(handle))
    assert [(m["id"], m["attempt"], m["failure"]) for m in recorded] == [
        ("charge", 2, "flaky failure 2")
    ]


async def test_a_local_attempt_past_its_timeout_fails_as_a_timeout(client: Client) -> None:
    definition = {
        "name": "local-timeout",
        "steps": {
            "slow": {
                "uses": "slow",
                "execution": "local",
                "timeout": "200ms",
                "with": {"seconds": 5},
                "retry": {"max_attempts": 2, "backoff": "fixed", "initial_interval": "100ms"},
                "on_error": "continue",
            }
        },
    }
    probe = Probe()
    async with dag_worker(client, probe.activities()) as worker:
        handle = await start_dag(client, worker, definition)
        await handle.result()
        p = await progress(handle)
    assert p.steps[0].status == StepStatus.FAILED
    assert p.steps[0].error == "timed out (start_to_close)"
    assert p.steps[0].attempts == 2
    assert probe.calls["slow"] == 2


@pytest.mark.parametrize("decision", ["retry", "complete", "skip", "fail"])
async def test_a_parked_local_step_is_resolved_by_the_operators_updates(
    client: Client, decision: str
) -> None:
    definition = {
        "name": "local-manual",
        "steps": {
            "charge": {"uses": "boom", "execution": "local", "on_error": "manual"},
            "after": {"uses": "noop", "execution": "local", "needs": ["charge"]},
        },
        "output": "${{ steps.charge.output }}",
    }
    probe = Probe()
    async with dag_worker(client, probe.activities()) as worker:
        handle = await start_dag(client, worker, definition)

        async def parked() -> bool:
            return (await progress(handle)).steps[0].status == StepStatus.NEEDS_ATTENTION

        await eventually(parked)
        p = await progress(handle)
        assert (p.steps[0].attempts, p.steps[0].error) == (1, "Boom: boom at charge")
        if decision == "retry":
            await handle.execute_update("retry_step", {"step": "charge", "with": {"ok": True}})
        elif decision == "complete":
            await handle.execute_update("complete_step", {"step": "charge", "output": "by hand"})
        elif decision == "skip":
            await handle.execute_update("skip_step", {"step": "charge"})
        else:
            await handle.execute_update("fail_run", {"reason": "no"})
        if decision == "fail":
            with pytest.raises(WorkflowFailureError):
                await handle.result()
            return
        output = await handle.result()
        p = await progress(handle)
    statuses = {s.step: s.status for s in p.steps}
    if decision == "retry":
        assert output == {"fixed": True, "key": "charge"}
        assert probe.calls["charge"] == 2
        ids = [(m["id"], m["failure"]) for m in markers(await history(handle))]
        assert ids == [("charge", "boom at charge"), ("charge#2", None), ("after", None)]
    elif decision == "complete":
        assert output == "by hand"
    else:
        assert output is None
        assert statuses == {"charge": StepStatus.SKIPPED, "after": StepStatus.SKIPPED}


async def test_local_for_each_items_are_markers_by_item_key(client: Client) -> None:
    definition = {
        "name": "local-items",
        "steps": {
            "each": {
                "uses": "noop",
                "execution": "local",
                "for_each": [1, 2, 3],
                "with": {"value": "${{ item * 10 }}"},
            }
        },
        "output": "${{ steps.each.output }}",
    }
    async with dag_worker(client, Probe().activities()) as worker:
        handle = await start_dag(client, worker, definition)
        assert await handle.result() == [10, 20, 30]
    assert sorted(m["id"] for m in markers(await history(handle))) == [
        "each[0]",
        "each[1]",
        "each[2]",
    ]


async def test_a_long_local_chain_counts_its_unrecorded_markers_toward_the_history_limit(
    client: Client,
) -> None:
    """Twenty local steps end in one workflow task; the run continues as new once the markers
    they will add would reach the limit, not only once the history already has."""
    async with dag_worker(client, Probe().activities()) as worker:
        handle = await start_dag(client, worker, local_chain(20), history_limit=12)
        assert await handle.result() == 19
    first = client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
    events = await history(first)
    assert events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
    assert len(events) <= 12 + 3
    assert 1 <= len(markers(events)) < 20


async def test_local_steps_timeout_mapping_reaches_the_activity(client: Client) -> None:
    seen: list[timedelta | None] = []

    @activity.defn(name="clock")
    async def clock(inp: StepInput) -> Any:
        info = activity.info()
        seen.append(info.start_to_close_timeout)
        seen.append(info.schedule_to_close_timeout)
        return None

    definition = {
        "name": "local-timeouts",
        "steps": {
            "c": {"uses": "clock", "execution": "local", "timeout": "3s", "total_timeout": "9s"}
        },
    }
    async with dag_worker(client, [clock]) as worker:
        handle = await start_dag(client, worker, definition)
        await handle.result()
    assert seen == [timedelta(seconds=3), timedelta(seconds=9)]


def markers_per_task(events: list[HistoryEvent]) -> list[int]:
    """How many local-activity markers each completed workflow task wrote."""
    counts: list[int] = []
    for event in events:
        if event.HasField("workflow_task_completed_event_attributes"):
            counts.append(0)
        elif event.HasField("marker_recorded_event_attributes") and counts:
            counts[-1] += event.marker_recorded_event_attributes.marker_name == LOCAL_MARKER
    return counts


async def test_a_task_busy_with_local_steps_for_a_second_lets_the_next_step_be_an_activity(
    client: Client,
) -> None:
    steps: dict[str, Any] = {"w0": {"uses": "slow", "with": {"seconds": 0.4}}}
    for i in range(1, 6):
        steps[f"w{i}"] = {"uses": "slow", "needs": [f"w{i - 1}"], "with": {"seconds": 0.4}}
    definition = {"name": "slow-local", "defaults": {"execution": "local"}, "steps": steps}
    async with dag_worker(client, Probe().activities()) as worker:
        handle = await start_dag(client, worker, definition)
        await handle.result()
    events = await history(handle)
    regular = scheduled_activities(events)
    local = [m["id"] for m in markers(events)]
    assert regular, "no step ran as an activity"
    assert local[:2] == ["w0", "w1"]
    assert sorted(regular + local) == sorted(steps)
    assert max(markers_per_task(events)) <= 3  # 0.4 s each: the fourth would start past 1 s


async def test_no_task_gathers_more_than_its_share_of_local_results(client: Client) -> None:
    n = LOCAL_TASK_STEPS + 10
    async with dag_worker(client, Probe().activities()) as worker:
        handle = await start_dag(client, worker, local_chain(n), history_limit=100_000)
        assert await handle.result() == n - 1
    events = await history(handle)
    assert scheduled_activities(events), "no step ran as an activity"
    assert len(markers(events)) + len(scheduled_activities(events)) == n
    assert max(markers_per_task(events)) <= LOCAL_TASK_STEPS


async def test_a_failed_local_attempt_is_one_log_line(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    quiet_step_failures()
    definition = {
        "name": "local-log",
        "steps": {"charge": {"uses": "boom", "execution": "local", "on_error": "continue"}},
    }
    with caplog.at_level(logging.WARNING, logger=ACTIVITY_LOGGER):
        async with dag_worker(client, Probe().activities()) as worker:
            handle = await start_dag(client, worker, definition)
            await handle.result()
    lines = [r.getMessage() for r in caplog.records if r.name == ACTIVITY_LOGGER]
    assert f"step charge attempt 1 of {handle.id} failed: Boom: boom at charge" in lines
    assert all(r.exc_info is None for r in caplog.records if r.name == ACTIVITY_LOGGER)


async def test_local_items_run_in_for_each_batches_too(client: Client) -> None:
    definition = {
        "name": "local-batches",
        "steps": {
            "each": {
                "uses": "noop",
                "execution": "local",
                "for_each": list(range(25)),
                "with": {"value": "${{ item + 1 }}"},
            }
        },
        "output": "${{ steps.each.output }}",
    }
    async with dag_worker(client, Probe().activities()) as worker:
        handle = await start_dag(client, worker, definition, batch_size=10)
        assert await handle.result() == list(range(1, 26))
    children = [
        e.child_workflow_execution_started_event_attributes.workflow_execution.workflow_id
        for e in await history(handle)
        if e.HasField("child_workflow_execution_started_event_attributes")
    ]
    assert len(children) == 3
    ids = []
    for child in children:
        batch = await history(client.get_workflow_handle(child))
        assert scheduled_activities(batch) == []
        ids += [m["id"] for m in markers(batch)]
    assert sorted(ids) == sorted(f"each[{i}]" for i in range(25))
