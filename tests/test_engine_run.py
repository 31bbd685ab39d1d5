"""DagRun semantics: concurrency, conditions, trigger rules, for_each, pure kinds, wait, child
runs and output, on a real Temporal dev server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from tests.engine import dag_worker, eventually, progress, start_dag
from tests.steps import Probe
from workflows.definition import Definition
from workflows.types import StepStatus


def statuses(p: Any) -> dict[str, str]:
    return {s.step: s.status.value for s in p.steps}


async def test_chain_and_output(client: Client) -> None:
    probe = Probe()
    async with dag_worker(client, probe.activities()) as w:
        handle = await start_dag(
            client,
            w,
            {
                "name": "chain",
                "steps": {
                    "a": {"uses": "transform", "with": {"value": "${{ input.n * 2 }}"}},
                    "b": {
                        "uses": "noop",
                        "needs": ["a"],
                        "with": {"value": "${{ steps.a.output }}"},
                    },
                    "c": {
                        "uses": "noop",
                        "needs": "b",
                        "with": {"value": "b said ${{ steps.b.output }} for ${{ run.tenant }}"},
                    },
                },
                "output": "${{ {'a': steps.a.output, 'c': steps.c.output} }}",
            },
            {"n": 21},
        )
        assert await handle.result() == {"a": 42, "c": "b said 42 for acme"}
        p = await progress(handle)
        assert statuses(p) == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}
        assert p.status.value == "completed"
        assert all(s.started_at and s.finished_at for s in p.steps)


async def test_input_schema_defaults_fill_the_input(client: Client) -> None:
    schema = {
        "type": "object",
        "properties": {
            "region": {"type": "string", "default": "eu"},
            "limits": {"type": "object", "properties": {"n": {"type": "integer", "default": 3}}},
            "tags": {"type": "array", "default": []},
        },
    }
    definition = {
        "name": "defaults",
        "input": schema,
        "steps": {"a": {"uses": "transform", "with": {"value": "${{ input }}"}}},
        "output": "${{ steps.a.output }}",
    }
    async with dag_worker(client) as w:
        given = await start_dag(client, w, definition, {"region": "us", "limits": {}})
        missing = await start_dag(client, w, definition)
        assert await given.result() == {"region": "us", "limits": {"n": 3}, "tags": []}
        assert await missing.result() == {"region": "eu", "limits": {"n": 3}, "tags": []}


async def test_ready_steps_run_at_once_up_to_max_parallel(client: Client) -> None:
    probe = Probe()
    steps = {f"s{i}": {"uses": "slow", "with": {"seconds": 0.3}} for i in range(6)}
    async with dag_worker(client, probe.activities()) as w:
        handle = await start_dag(client, w, {"name": "wide", "steps": steps})
        await handle.result()
        assert probe.peak == 6
        probe.peak = 0
        handle = await start_dag(client, w, {"name": "wide", "max_parallel": 2, "steps": steps})
        await handle.result()
        assert probe.peak == 2


async def test_if_false_skips_and_skip_propagates_to_the_end(client: Client) -> None:
    probe = Probe()
    async with dag_worker(client, probe.activities()) as w:
        handle = await start_dag(
            client,
            w,
            {
                "name": "branch",
                "steps": {
                    "check": {"uses": "transform", "with": {"value": "${{ input.big }}"}},
                    "big": {"uses": "noop", "needs": ["check"], "if": "${{ steps.check.output }}"},
                    "big_after": {"uses": "noop", "needs": ["big"]},
                    "small": {"uses": "noop", "needs": ["check"], "if": "!steps.check.output"},
                    "join": {
                        "uses": "noop",
                        "needs": ["big_after", "small"],
                        "trigger_rule": "none_failed",
                    },
                },
            },
            {"big": False},
        )
        await handle.result()
        p = await progress(handle)
        assert statuses(p) == {
            "check": "succeeded",
            "big": "skipped",
            "big_after": "skipped",
            "small": "succeeded",
            "join": "succeeded",
        }
        notes = {s.step: s.note for s in p.steps}
        assert notes["big"] == "condition was false"
        assert "all_succeeded not met (big skipped)" in (notes["big_after"] or "")
        assert "big" not in probe.calls and "big_after" not in probe.calls


@pytest.mark.parametrize(
    ("rule", "runs"),
    [
        ("all_succeeded", False),
        ("all_done", True),
        ("any_succeeded", True),
        ("none_failed", False),
    ],
)
async def test_trigger_rules_after_a_failed_and_a_succeeded_need(
    client: Client, rule: str, runs: bool
) -> None:
    probe = Probe()
    async with dag_worker(client, probe.activities()) as w:
        handle = await start_dag(
            client,
            w,
            {
                "name": "rules",
                "steps": {
                    "good": {"uses": "noop"},
                    "bad": {"uses": "boom", "on_error": "continue"},
                    "after": {"uses": "noop", "needs": ["good", "bad"], "trigger_rule": rule},
                },
            },
        )
        await handle.result()
        p = await progress(handle)
        assert statuses(p)["bad"] == "failed"
        assert statuses(p)["after"] == ("succeeded" if runs else "skipped")


async def test_any_succeeded_skips_when_every_need_was_skipped(client: Client) -> None:
    probe = Probe()
    async with dag_worker(client, probe.activities()) as w:
        handle = await start_dag(
            client,
            w,
            {
                "name": "none-ran",
                "steps": {
                    "a": {"uses": "noop", "if": False},
                    "b": {"uses": "noop", "if": False},
                    "join": {"uses": "noop", "needs": ["a", "b"], "trigger_rule": "any_succeeded"},
                },
            },
        )
        await handle.result()
        assert statuses(await progress(handle))["join"] == "skipped"


async def test_for_each_keeps_item_order_and_concurrency_limit(client: Client) -> None:
    probe = Probe()
    async with dag_worker(client, probe.activities()) as w:
        handle = await start_dag(
            client,
            w,
            {
                "name": "fan",
                "steps": {
                    "items": {"uses": "transform", "with": {"value": "${{ input.skus }}"}},
                    "reserve": {
                        "uses": "slow",
                        "needs": ["items"],
                        "for_each": "${{ steps.items.output }}",
                        "concurrency": 3,
                        "with": {"seconds": 0.1, "sku": "${{ item }}"},
                    },
                    "count": {
                        "uses": "transform",
                        "needs": ["reserve"],
                        "with": {"value": "${{ size(steps.reserve.output) }}"},
                    },
                },
                "output": "${{ steps.reserve.output }}",
            },
            {"skus": [f"sku{i}" for i in range(10)]},
        )
        assert await handle.result() == [f"reserve[{i}]" for i in range(10)]
        assert probe.peak == 3
        p = await progress(handle)
        reserve = next(s for s in p.steps if s.step == "reserve")
        assert (reserve.items_total, reserve.items_done) == (10, 10)


async def test_for_each_literal_list_with_index(client: Client) -> None:
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(
            client,
            w,
            {
                "name": "lit",
                "steps": {
                    "label": {
                        "uses": "transform",
                        "for_each": ["x", "y"],
                        "with": {"value": "${{ string(index) + ':' + item }}"},
                    }
                },
                "output": "${{ steps.label.output }}",
            },
        )
        assert await handle.result() == ["0:x", "1:y"]


async def test_validate_lists_every_violation_without_retrying(client: Client) -> None:
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(
            client,
            w,
            {
                "name": "check",
                "steps": {
                    "check": {
                        "uses": "validate",
                        "with": {
                            "value": "${{ input }}",
                            "schema": {
                                "type": "object",
                                "required": ["id", "total"],
                                "properties": {"id": {"type": "string"}, "n": {"type": "integer"}},
                            },
                        },
                    }
                },
            },
            {"id": 7, "n": "x"},
        )
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        cause = info.value.cause
        assert isinstance(cause, ApplicationError)
        assert cause.type == "StepFailed"
        assert "step 'check' failed: value does not match the schema (3 problems)" in cause.message
        for fragment in ("'total' is a required property", "7 is not of type 'string'", "$.n"):
            assert fragment in cause.message
        check = (await progress(handle)).steps[0]
        assert check.attempts == 1


async def test_expression_error_fails_the_step_not_the_workflow_task(client: Client) -> None:
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(
            client,
            w,
            {
                "name": "bad-expr",
                "steps": {
                    "first": {"uses": "transform", "with": {"value": {"a": 1}}},
                    "second": {
                        "uses": "noop",
                        "needs": ["first"],
                        "with": {"value": "${{ steps.first.output.missing + 1 }}"},
                    },
                },
            },
        )
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        message = str(info.value.cause)
        assert "step 'second' failed" in message
        assert "steps.first.output.missing + 1" in message
        assert "no such key: 'missing'" in message


async def test_wait_duration_until_and_event(client: Client) -> None:
    async with dag_worker(client, Probe().activities()) as w:
        soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        handle = await start_dag(
            client,
            w,
            {
                "name": "waits",
                "steps": {
                    "pause": {"uses": "wait", "with": {"duration": "300ms"}},
                    "until": {"uses": "wait", "with": {"until": soon}},
                    "approval": {"uses": "wait", "with": {"event": "approved", "timeout": "1m"}},
                },
                "output": "${{ steps.approval.output }}",
            },
        )
        await eventually(lambda: _status_is(handle, "waiting"))
        await handle.signal("send_event", {"name": "approved", "payload": {"by": "ann"}})
        assert await handle.result() == {"by": "ann"}
        p = await progress(handle)
        pause = next(s for s in p.steps if s.step == "pause")
        assert pause.finished_at and pause.started_at
        assert (pause.finished_at - pause.started_at) >= timedelta(milliseconds=300)


async def _status_is(handle: Any, status: str) -> bool:
    return (await progress(handle)).status.value == status


async def test_wait_for_event_times_out(client: Client) -> None:
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(
            client,
            w,
            {
                "name": "late",
                "steps": {
                    "approval": {"uses": "wait", "with": {"event": "ok", "timeout": "300ms"}}
                },
            },
        )
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert "no event 'ok' arrived before the timeout" in str(info.value.cause)


async def test_workflow_step_runs_a_child_and_returns_its_output(client: Client) -> None:
    child = Definition.model_validate(
        {
            "name": "double",
            "steps": {"d": {"uses": "transform", "with": {"value": "${{ input.x * 2 }}"}}},
            "output": "${{ steps.d.output }}",
        }
    )
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(
            client,
            w,
            {
                "name": "parent",
                "steps": {
                    "call": {
                        "uses": "workflow",
                        "with": {"definition": "double@3", "input": {"x": "${{ input.x }}"}},
                    }
                },
                "output": "${{ steps.call.output }}",
            },
            {"x": 5},
            library={"double@3": child},
        )
        assert await handle.result() == 10
        children = [
            e
            async for e in handle.fetch_history_events()
            if e.HasField("start_child_workflow_execution_initiated_event_attributes")
        ]
        attrs = children[0].start_child_workflow_execution_initiated_event_attributes
        assert attrs.workflow_id == f"{handle.id}/call"


async def test_workflow_step_input_is_checked_against_the_childs_schema(client: Client) -> None:
    child = Definition.model_validate(
        {
            "name": "double",
            "input": {
                "type": "object",
                "required": ["x"],
                "properties": {"x": {"type": "integer"}, "note": {"type": "string"}},
            },
            "steps": {"d": {"uses": "transform", "with": {"value": "${{ input.x * 2 }}"}}},
            "output": "${{ steps.d.output }}",
        }
    )
    parent = {
        "name": "parent",
        "steps": {
            "call": {
                "uses": "workflow",
                "with": {"definition": "double", "input": "${{ input }}"},
                "on_error": "continue",
            }
        },
        "output": "${{ steps.call.status }}",
    }
    async with dag_worker(client, Probe().activities()) as w:
        bad = await start_dag(client, w, parent, {"note": 1}, library={"double": child})
        good = await start_dag(client, w, parent, {"x": 2}, library={"double": child})
        assert await bad.result() == "failed"
        assert await good.result() == "succeeded"
        [call] = (await progress(bad)).steps
        assert call.error is not None
        assert "input schema of 'double' (2 problems)" in call.error
        assert "'x' is a required property" in call.error
        assert "$.note: 1 is not of type 'string'" in call.error
        started = [
            e
            async for e in bad.fetch_history_events()
            if e.HasField("start_child_workflow_execution_initiated_event_attributes")
        ]
        assert started == []  # no child run was started with the bad input


async def test_run_timeout_ends_the_run_and_cancels_steps(client: Client) -> None:
    probe = Probe()
    async with dag_worker(client, probe.activities()) as w:
        handle = await start_dag(
            client,
            w,
            {
                "name": "slowrun",
                "timeout": "500ms",
                "steps": {"long": {"uses": "slow", "with": {"seconds": 30}}},
            },
        )
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        cause = info.value.cause
        assert isinstance(cause, ApplicationError)
        assert cause.type == "RunTimedOut"
        p = await progress(handle)
        assert p.status.value == "timed_out"
        assert p.steps[0].status == StepStatus.CANCELLED
        desc = await handle.describe()
        assert desc.typed_search_attributes.get(_dag_status()) == "TimedOut"


async def test_cancelling_a_run_marks_steps_cancelled(client: Client) -> None:
    probe = Probe()
    async with dag_worker(client, probe.activities()) as w:
        handle = await start_dag(
            client,
            w,
            {"name": "cancel-me", "steps": {"long": {"uses": "slow", "with": {"seconds": 30}}}},
        )
        await eventually(lambda: _has_run(probe))
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        p = await progress(handle)
        assert p.status.value == "cancelled"
        assert p.steps[0].status == StepStatus.CANCELLED


async def _has_run(probe: Probe) -> bool:
    return probe.running > 0


def _dag_status() -> Any:
    from workflows.search_attributes import DAG_STATUS

    return DAG_STATUS


async def test_search_attributes_and_activity_names(client: Client) -> None:
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(
            client,
            w,
            {
                "name": "names",
                "steps": {
                    "reserve": {
                        "uses": "noop",
                        "for_each": [1, 2],
                        "summary": "Reserve stock",
                    }
                },
            },
            tenant="globex",
        )
        await handle.result()
        desc = await handle.describe()
        sa = desc.typed_search_attributes
        from workflows import search_attributes as keys

        assert sa.get(keys.TENANT_ID) == "globex"
        assert sa.get(keys.DAG_NAME) == "names"
        assert sa.get(keys.DAG_VERSION) == 1
        assert sa.get(keys.DAG_STATUS) == "Completed"
        scheduled = [
            e
            async for e in handle.fetch_history_events()
            if e.HasField("activity_task_scheduled_event_attributes")
        ]
        ids = sorted(e.activity_task_scheduled_event_attributes.activity_id for e in scheduled)
        assert ids == ["reserve[0]", "reserve[1]"]
        summaries = [e.user_metadata.summary.data.decode() for e in scheduled]
        assert '"reserve[0]: Reserve stock"' in summaries


async def test_runs_concurrently_in_one_worker(client: Client) -> None:
    probe = Probe()
    async with dag_worker(client, probe.activities()) as w:
        handles = [
            await start_dag(client, w, {"name": f"many{i}", "steps": {"a": {"uses": "noop"}}})
            for i in range(5)
        ]
        await asyncio.gather(*(h.result() for h in handles))
        assert sum(probe.calls.values()) == 5


async def test_a_definition_that_skipped_validation_fails_instead_of_hanging(
    client: Client,
) -> None:
    definition = Definition.model_construct(
        name="cyclic",
        steps={
            "a": Definition.model_validate(
                {"name": "x", "steps": {"a": {"uses": "noop", "needs": ["b"]}}}
            ).steps["a"],
            "b": Definition.model_validate(
                {"name": "x", "steps": {"b": {"uses": "noop", "needs": ["a"]}}}
            ).steps["b"],
        },
    )
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(client, w, definition)
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        cause = info.value.cause
        assert isinstance(cause, ApplicationError)
        assert cause.type == "InvalidDefinition"
        assert "steps that can never start: a, b" in cause.message


async def test_command_is_a_search_attribute_and_children_inherit_it(client: Client) -> None:
    child = Definition.model_validate(
        {"name": "kid", "steps": {"k": {"uses": "transform", "with": {"value": 1}}}}
    )
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(
            client,
            w,
            {"name": "cmd", "steps": {"c": {"uses": "workflow", "with": {"definition": "kid"}}}},
            command="order.created",
            library={"kid": child},
        )
        await handle.result()
        from workflows.search_attributes import DAG_COMMAND, TENANT_ID

        kid = client.get_workflow_handle(f"{handle.id}/c")
        for desc in (await handle.describe(), await kid.describe()):
            assert desc.typed_search_attributes.get(DAG_COMMAND) == "order.created"
            assert desc.typed_search_attributes.get(TENANT_ID) == "acme"


async def test_extension_functions_run_in_the_workflow(client: Client) -> None:
    """cel-go's string, list and math functions work inside the sandboxed interpreter."""
    async with dag_worker(client, Probe().activities()) as w:
        handle = await start_dag(
            client,
            w,
            {
                "name": "cel-extensions",
                "steps": {
                    "slug": {
                        "uses": "transform",
                        "with": {"value": "${{ input.title.lowerAscii().split(' ').join('-') }}"},
                    },
                    "top": {
                        "uses": "transform",
                        "if": "${{ math.greatest(input.scores) > 5 }}",
                        "with": {"value": "${{ input.scores.sort().reverse().slice(0, 2) }}"},
                    },
                },
                "output": "${{ [steps.slug.output, steps.top.output] }}",
            },
            {"title": "Hello Big World", "scores": [3, 9, 7]},
        )
        assert await handle.result() == ["hello-big-world", [9, 7]]
