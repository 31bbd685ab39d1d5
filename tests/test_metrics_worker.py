"""The worker's Prometheus endpoint: the SDK's metrics and dagflow's step metrics move as real
runs succeed, fail and park."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import pytest

from tests.engine import dag_worker, eventually, start_dag
from tests.metrics import free_address, scrape, value
from tests.steps import Probe
from worker.client import connect
from worker.metrics import MetricsAddressError, prometheus_runtime


@pytest.mark.parametrize("execution", ["activity", "local"])
async def test_step_and_park_metrics_move_with_real_runs(
    temporal_address: str, execution: str
) -> None:
    address = free_address()
    url = f"http://{address}/metrics"
    client = await connect(temporal_address, runtime=prometheus_runtime(address))
    tenant = f"m-{uuid.uuid4().hex[:8]}"
    definition = {
        "name": "metered",
        "defaults": {"execution": execution},
        "steps": {
            "ok": {"uses": "noop"},
            "bad": {
                "uses": "boom",
                "needs": ["ok"],
                "retry": {"max_attempts": 1},
                "on_error": "manual",
            },
        },
    }
    before = await scrape(url)
    assert value(before, "dagflow_steps_parked_total", tenant=tenant) == 0
    async with dag_worker(client, Probe().activities()) as worker:
        handle = await start_dag(client, worker, definition, tenant=tenant)
        parked: dict[str, str] = {}

        async def is_parked() -> bool:
            text = await scrape(url)
            parked["text"] = text
            return value(text, "dagflow_steps_parked_total", tenant=tenant, kind="boom") == 1

        await eventually(is_parked)
        text = parked["text"]
        attempts = "dagflow_step_attempts_total"
        assert value(text, attempts, tenant=tenant, kind="noop", outcome="succeeded") == 1
        assert value(text, attempts, tenant=tenant, kind="boom", outcome="failed") == 1
        assert value(text, "dagflow_steps_parked_total", definition="metered", tenant=tenant) == 1
        assert value(text, "dagflow_steps_resolved_total", tenant=tenant) == 0
        durations = value(text, "dagflow_step_duration_seconds_count", kind="boom")
        assert durations >= 1

        await handle.signal("retry_step", {"step": "bad", "with": {"ok": True}})
        await handle.result()

        async def resolved() -> bool:
            text = await scrape(url)
            parked["text"] = text
            return value(text, "dagflow_steps_resolved_total", tenant=tenant, action="retry") == 1

        await eventually(resolved)
        text = parked["text"]
        assert value(text, attempts, tenant=tenant, kind="boom", outcome="succeeded") == 1
        assert value(text, "dagflow_step_duration_seconds_count", kind="boom") == durations + 1
        # the SDK's own metrics come out of the same endpoint
        assert value(text, "temporal_workflow_completed_total", workflow_type="DagRun") >= 1


def test_a_bad_metrics_address_is_named() -> None:
    with pytest.raises(MetricsAddressError, match="nonsense"):
        prometheus_runtime("nonsense")


async def test_dagflow_worker_exits_2_naming_a_bad_metrics_address(temporal_address: str) -> None:
    dagflow = str(Path(sys.executable).parent / "dagflow")
    process = await asyncio.create_subprocess_exec(
        dagflow, "worker", "--address", temporal_address, "--metrics-address", "nonsense",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2, out
    assert b"cannot serve metrics on 'nonsense'" in out


async def test_a_park_is_not_counted_again_when_another_worker_replays_the_run(
    temporal_address: str,
) -> None:
    first, second = free_address(), free_address()
    tenant = f"m-{uuid.uuid4().hex[:8]}"
    definition = {
        "name": "replayed",
        "steps": {"bad": {"uses": "boom", "retry": {"max_attempts": 1}, "on_error": "manual"}},
    }
    client = await connect(temporal_address, runtime=prometheus_runtime(first))
    queue = f"tq-{uuid.uuid4()}"
    async with dag_worker(client, Probe().activities(), task_queue=queue) as worker:
        handle = await start_dag(client, worker, definition, tenant=tenant)

        async def parked() -> bool:
            text = await scrape(f"http://{first}/metrics")
            return value(text, "dagflow_steps_parked_total", tenant=tenant) == 1

        await eventually(parked)
    # a new worker (a new process's counters) picks the run up: it replays the park, then
    # resolves it live
    other = await connect(temporal_address, runtime=prometheus_runtime(second))
    async with dag_worker(other, Probe().activities(), task_queue=queue):
        await other.get_workflow_handle(handle.id).signal(
            "retry_step", {"step": "bad", "with": {"ok": True}}
        )
        await handle.result()
        seen: dict[str, str] = {}

        async def resolved() -> bool:
            seen["text"] = text = await scrape(f"http://{second}/metrics")
            return value(text, "dagflow_steps_resolved_total", tenant=tenant, action="retry") == 1

        await eventually(resolved)
        assert value(seen["text"], "dagflow_steps_parked_total", tenant=tenant) == 0
