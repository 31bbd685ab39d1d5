"""The payload store: payloads over the threshold go to files, history holds a reference, runs
decode them back (and replay), encryption composes with it, and a bad store fails clearly."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import Client
from temporalio.converter import StorageDriverRetrieveContext, StorageDriverStoreContext
from temporalio.worker import Replayer

from tests.engine import dag_worker, start_dag
from tests.steps import Probe
from tests.test_cli_engine import dagflow
from tests.test_encryption import raw_histories
from worker.client import connect
from worker.codec import ENCODING, Keyring
from worker.payloads import (
    DEFAULT_THRESHOLD,
    DRIVER_NAME,
    FileDriver,
    PayloadStore,
    PayloadStoreError,
)
from worker.settings import Settings
from worker.worker import sandbox_runner
from workflows.command import DagCommand
from workflows.dag_run import DagForEachBatch, DagRun
from workflows.types import RunSnapshot

MARK = "needle-5c1d"
ITEMS = [f"{MARK}-{i:07d}-{'x' * 16}" for i in range(100_000)]
"""About 3.2 MB as JSON: over Temporal's 2 MB limit for one payload."""
ECHO = {
    "name": "store-echo",
    "steps": {
        "copy": {"uses": "transform", "with": {"value": "${{ input.items }}"}},
        "echo": {"uses": "noop", "needs": "copy", "with": {"value": "${{ steps.copy.output }}"}},
    },
    "output": "${{ steps.echo.output }}",
}
"""The items through the workflow (a transform) and an activity (its input and result)."""


def payloads(history: History) -> list[Payload]:
    """Every payload of the events that carry the run's data."""
    found: list[Payload] = []
    for event in history.events:
        for name in (
            "workflow_execution_started_event_attributes",
            "activity_task_scheduled_event_attributes",
            "activity_task_completed_event_attributes",
            "workflow_execution_completed_event_attributes",
        ):
            if event.HasField(name):
                attrs = getattr(event, name)
                holder = attrs.input if hasattr(attrs, "input") else attrs.result
                found.extend(holder.payloads)
    return found


def stored_files(root: Path) -> list[Path]:
    """The files in the store."""
    return [p for p in root.rglob("*") if p.is_file()]


async def store_client(client: Client, root: Path, keys: str | None = None) -> Client:
    return await connect(
        client.service_client.config.target_host,
        client.namespace,
        keyring=Keyring.parse(keys) if keys else None,
        store=PayloadStore(root),
    )


async def run_echo(store: Client, items: list[str]) -> tuple[Any, str, str]:
    """Run ECHO; its output, workflow id and run id."""
    async with dag_worker(store, Probe().activities()) as w:
        handle = await start_dag(store, w, ECHO, {"items": items})
        output = await handle.result()
    return output, handle.id, handle.first_execution_run_id or ""


async def raw_history(plain: Client, workflow_id: str, run_id: str) -> History:
    """The run's history as Temporal holds it (fetched without a codec or store)."""
    return (await raw_histories(plain, workflow_id, run_id))[0]


async def test_large_payloads_go_to_the_store_and_history_holds_references(
    client: Client, tmp_path: Path
) -> None:
    store = await store_client(client, tmp_path)
    output, wid, rid = await run_echo(store, ITEMS)
    assert output == ITEMS

    history = await raw_history(client, wid, rid)
    data = payloads(history)
    references = [p for p in data if p.external_payloads]
    # the run's input, the activity's input and result, the run's result
    assert len(references) == 4
    assert all(p.ByteSize() < 1024 for p in data), "history holds only small payloads"
    assert MARK.encode() not in history.SerializeToString()
    assert all(p.external_payloads[0].size_bytes > 2_000_000 for p in references)
    files = stored_files(tmp_path)
    assert files and all(MARK.encode() in f.read_bytes() for f in files)

    replayer = Replayer(
        workflows=[DagRun, DagForEachBatch, DagCommand],
        data_converter=store.data_converter,
        workflow_runner=sandbox_runner(),
    )
    await replayer.replay_workflow(await store.get_workflow_handle(wid, run_id=rid).fetch_history())


async def test_small_payloads_stay_in_history(client: Client, tmp_path: Path) -> None:
    store = await store_client(client, tmp_path)
    output, wid, rid = await run_echo(store, ITEMS[:10])
    assert output == ITEMS[:10]
    history = await raw_history(client, wid, rid)
    assert len(payloads(history)) == 4
    assert not [p for p in payloads(history) if p.external_payloads]
    assert not stored_files(tmp_path)


async def test_encrypted_payloads_are_stored_encrypted(client: Client, tmp_path: Path) -> None:
    key = base64.b64encode(b"7" * 32).decode()
    store = await store_client(client, tmp_path, f"k7:{key}")
    output, wid, rid = await run_echo(store, ITEMS)
    assert output == ITEMS
    files = stored_files(tmp_path)
    assert len(files) == 4, "encrypted with a fresh nonce each time: no two files alike"
    for f in files:
        stored = Payload.FromString(f.read_bytes())
        assert stored.metadata["encoding"] == ENCODING, "the store holds what the codec made"
        assert MARK.encode() not in f.read_bytes()
    history = await raw_history(client, wid, rid)
    references = [p for p in payloads(history) if p.external_payloads]
    assert len(references) == 4
    assert MARK.encode() not in history.SerializeToString()

    # with the store but without the keys, what comes back is still encrypted
    plain = await store_client(client, tmp_path)
    with pytest.raises(Exception, match="binary/encrypted"):
        await plain.get_workflow_handle(wid, run_id=rid).result()


async def test_a_reader_without_the_store_fails_clearly(client: Client, tmp_path: Path) -> None:
    store = await store_client(client, tmp_path)
    _, wid, rid = await run_echo(store, ITEMS)
    with pytest.raises(RuntimeError, match="external storage is not configured"):
        await client.get_workflow_handle(wid, run_id=rid).result()
    elsewhere = await store_client(client, tmp_path / "elsewhere")
    with pytest.raises(PayloadStoreError, match="DAGFLOW_PAYLOAD_STORE"):
        await elsewhere.get_workflow_handle(wid, run_id=rid).result()


async def test_the_file_driver_deduplicates_and_checks_hashes(tmp_path: Path) -> None:
    driver = FileDriver(tmp_path)
    payload = Payload(metadata={"encoding": b"json/plain"}, data=b'"' + b"y" * 1000 + b'"')
    first = await driver.store(StorageDriverStoreContext(), [payload])
    again = await driver.store(StorageDriverStoreContext(), [payload, payload])
    assert first[0] == again[0] == again[1]
    files = stored_files(tmp_path)
    assert len(files) == 1
    assert await driver.retrieve(StorageDriverRetrieveContext(), first) == [payload]

    files[0].write_bytes(files[0].read_bytes() + b"!")
    with pytest.raises(PayloadStoreError, match="does not match its hash"):
        await driver.retrieve(StorageDriverRetrieveContext(), first)
    files[0].unlink()
    with pytest.raises(PayloadStoreError, match="is not in the payload store"):
        await driver.retrieve(StorageDriverRetrieveContext(), first)
    bad = type(first[0])(claim_data={"sha256": "../../etc/passwd"})
    with pytest.raises(PayloadStoreError, match="without a valid sha256"):
        await driver.retrieve(StorageDriverRetrieveContext(), [bad])
    assert driver.name() == DRIVER_NAME


def test_the_store_settings() -> None:
    assert PayloadStore.from_env({}) is None
    store = PayloadStore.from_env({"DAGFLOW_PAYLOAD_STORE": "/tmp/p"})
    assert store == PayloadStore(Path("/tmp/p"), DEFAULT_THRESHOLD)
    store = PayloadStore.from_env(
        {"DAGFLOW_PAYLOAD_STORE": "/tmp/p", "DAGFLOW_PAYLOAD_STORE_THRESHOLD": "4096"}
    )
    assert store is not None and store.threshold == 4096
    with pytest.raises(ValueError, match="DAGFLOW_PAYLOAD_STORE_THRESHOLD: not a number"):
        PayloadStore.from_env(
            {"DAGFLOW_PAYLOAD_STORE": "/tmp/p", "DAGFLOW_PAYLOAD_STORE_THRESHOLD": "1MB"}
        )
    with pytest.raises(ValueError, match="payload_store_threshold"):
        Settings(payload_store_threshold=-1)


COUNT = {
    "name": "store-count",
    "steps": {"count": {"uses": "transform", "with": {"value": "${{ size(input.items) }}"}}},
    "output": "${{ steps.count.output }}",
}


async def test_dagflow_run_takes_a_large_input_file_with_the_store(
    client: Client, tmp_path: Path
) -> None:
    definition, data, store = tmp_path / "count.json", tmp_path / "input.json", tmp_path / "s"
    write_json(definition, COUNT)
    write_json(data, {"items": ITEMS})
    address = client.service_client.config.target_host
    async with dag_worker(await store_client(client, store)) as w:
        args = ["run", str(definition), "--input", f"@{data}", "--wait", "--json"]
        args += ["--address", address, "--task-queue", w.task_queue]
        code, out, err = await dagflow(*args, env={"DAGFLOW_PAYLOAD_STORE": str(store)})
        assert code == 0, err
        assert json.loads(out)["output"] == len(ITEMS)
        code, out, err = await dagflow(*args, env={"DAGFLOW_PAYLOAD_STORE": ""})
    assert code == 2
    assert "over Temporal's limit of 2 MB per payload; set DAGFLOW_PAYLOAD_STORE" in err
    assert "Traceback" not in err


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value))


async def test_a_snapshot_over_the_limit_goes_through_the_store(
    client: Client, tmp_path: Path
) -> None:
    """The ``snapshot`` query (what a rerun reuses) answers with every output even when they add
    up to more than Temporal's 2 MB: the answer goes to the store like any large payload."""
    store = await store_client(client, tmp_path)
    copies = {
        f"copy{i}": {"uses": "transform", "with": {"value": "${{ input }}"}} for i in range(12)
    }
    async with dag_worker(store, Probe().activities()) as w:
        handle = await start_dag(store, w, {"name": "big-snapshot", "steps": copies}, MARK * 20_000)
        await handle.result()
        snapshot = await handle.query("snapshot", result_type=RunSnapshot)
    assert sorted(snapshot.steps) == sorted(copies)
    assert all(r.output == MARK * 20_000 for r in snapshot.steps.values())
    assert len(MARK * 20_000) * len(copies) > 2_000_000
