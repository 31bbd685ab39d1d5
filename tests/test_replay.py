"""Determinism: stored histories of representative runs replay with today's code, and so do
fresh runs of the same scenarios."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from tests.engine import dag_worker
from tests.scenarios import HISTORIES, SCENARIOS, histories_of
from tests.steps import Probe
from worker.client import DATA_CONVERTER
from worker.worker import sandbox_runner
from workflows.command import DagCommand
from workflows.dag_run import DagForEachBatch, DagRun


async def replay(histories: list[WorkflowHistory]) -> dict[str, str]:
    """Replay with today's workflow code; the failures by history."""

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    results = await replayer().replay_workflows(each(), raise_on_replay_failure=False)
    return {run: str(failure) for run, failure in results.replay_failures.items()}


def replayer() -> Replayer:
    return Replayer(
        workflows=[DagRun, DagForEachBatch, DagCommand],
        data_converter=DATA_CONVERTER,
        workflow_runner=sandbox_runner(),
    )


def stored() -> list[WorkflowHistory]:
    histories = []
    for path in sorted(HISTORIES.glob("*.json")):
        stored = json.loads(path.read_text())
        histories.append(WorkflowHistory.from_json(stored["workflow_id"], stored["history"]))
    return histories


async def test_stored_histories_replay_without_failure() -> None:
    histories = stored()
    names = {path.name.split(".")[0] for path in HISTORIES.glob("*.json")}
    assert names == set(SCENARIOS), "run `python -m tests.scenarios` to record them"
    assert len(histories) >= len(SCENARIOS)
    assert await replay(histories) == {}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_fresh_runs_replay_without_failure(client: Client, name: str) -> None:
    async with dag_worker(client, Probe().activities()) as worker:
        handle = await SCENARIOS[name](client, worker)
    histories = await histories_of(client, handle)
    assert len(histories) >= 1
    assert await replay(histories) == {}
