"""Payload encryption: real runs leave no plain text in Temporal's history, decode with the
keys, survive key rotation, and refuse a payload moved from another tenant's run."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution
from temporalio.api.history.v1 import History
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import Client, WorkflowFailureError
from temporalio.converter import WorkflowSerializationContext
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from tests.engine import chain_definition, dag_worker, eventually, progress, start_dag
from tests.history import run_histories
from tests.steps import Probe
from worker.client import connect
from worker.codec import (
    ENCODING,
    KEY_ID,
    TENANT,
    DecryptionError,
    EncryptionCodec,
    Keyring,
    decrypt,
    encrypt,
    tenant_of,
)
from worker.worker import sandbox_runner
from workflows.command import DagCommand
from workflows.dag_run import DagForEachBatch, DagRun
from workflows.types import StepInput

DAGFLOW = str(Path(sys.executable).parent / "dagflow")
CANARY = "canary-7f3e9a1c-do-not-leak"
K1 = base64.b64encode(b"1" * 32).decode()
K2 = base64.b64encode(b"2" * 32).decode()


@activity.defn(name="leak")
async def leak(inp: StepInput) -> Any:
    """Fails with its input in the message, as a careless service's error would."""
    raise ApplicationError(f"card {inp.with_['card']} was declined", non_retryable=True)


async def encrypted_client(client: Client, keys: str) -> Client:
    return await connect(
        client.service_client.config.target_host, client.namespace, keyring=Keyring.parse(keys)
    )


@pytest.fixture
async def secret_client(client: Client) -> AsyncIterator[Client]:
    yield await encrypted_client(client, f"k1:{K1}")


async def raw_histories(plain: Client, workflow_id: str, run_id: str) -> list[History]:
    """Every history of a run's continue-as-new chain and its children, fetched by a client
    with no codec (what anyone reading Temporal's database or the Web UI without the codec
    server sees)."""
    return [
        History(events=fetched.events)
        async for _, _, fetched in run_histories(plain, workflow_id, run_id)
    ]


def leaks(histories: list[History]) -> int:
    """Occurrences of the canary in the raw bytes of the histories (payload data verbatim)."""
    return sum(h.SerializeToString().count(CANARY.encode()) for h in histories)


def everything_definition() -> dict[str, Any]:
    """A chain long enough to continue as new, a for_each in child batches, and a failing step
    (on_error: continue) whose error message holds the canary."""
    definition = chain_definition(20, name="enc-everything")
    definition["steps"].update(
        {
            "echo": {"uses": "noop", "with": {"value": "${{ input.secret }}"}},
            "fan": {
                "uses": "noop",
                "for_each": "${{ input.items }}",
                "with": {"value": "${{ item }}"},
            },
            "bad": {
                "uses": "leak",
                "with": {"card": "${{ input.secret }}"},
                "on_error": "continue",
            },
        }
    )
    definition["output"] = "${{ [steps.echo.output, steps.fan.output, steps.s19.output] }}"
    return definition


async def test_real_runs_leave_no_plain_text_in_history(
    client: Client, secret_client: Client
) -> None:
    items = [f"{CANARY}-{i}" for i in range(12)]
    async with dag_worker(secret_client, [*Probe().activities(), leak]) as w:
        handle = await start_dag(
            secret_client,
            w,
            everything_definition(),
            {"secret": CANARY, "items": items},
            history_limit=60,
            batch_size=5,
        )
        assert await handle.result() == [CANARY, items, 19]
        p = await progress(handle)
        assert p.continued >= 1
        bad = next(s for s in p.steps if s.step == "bad")
        assert bad.status.value == "failed"
        assert CANARY in str(bad.error), "the codec decodes the step's error"

        failing = await start_dag(
            secret_client,
            w,
            {"name": "enc-fails", "steps": {"bad": {"uses": "leak", "with": {"card": CANARY}}}},
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await failing.result()
        assert CANARY in str(failure.value.cause) + str(failure.value.cause.__cause__)

    histories = await raw_histories(client, handle.id, handle.first_execution_run_id or "")
    starts = [h.events[0].workflow_execution_started_event_attributes for h in histories]
    assert sum(s.HasField("parent_workflow_execution") for s in starts) >= 3, "child batches"
    assert sum(bool(s.continued_execution_run_id) for s in starts) >= 1, "continued"
    histories += await raw_histories(client, failing.id, failing.first_execution_run_id or "")
    assert leaks(histories) == 0
    for history in histories:
        text = history.SerializeToString()
        assert b"was declined" not in text, "failure messages are encrypted too"
    replayer = Replayer(
        workflows=[DagRun, DagForEachBatch, DagCommand],
        data_converter=secret_client.data_converter,
        workflow_runner=sandbox_runner(),
    )
    await replayer.replay_workflow(
        await secret_client.get_workflow_handle(handle.id).fetch_history()
    )
    started = histories[0].events[0].workflow_execution_started_event_attributes
    metadata = started.input.payloads[0].metadata
    assert metadata["encoding"] == ENCODING
    assert metadata[KEY_ID] == b"k1"
    assert metadata[TENANT] == b"acme"


async def test_the_scan_finds_the_canary_without_encryption(client: Client) -> None:
    async with dag_worker(client, [*Probe().activities(), leak]) as w:
        handle = await start_dag(
            client,
            w,
            {"name": "plain", "steps": {"echo": {"uses": "noop", "with": {"value": CANARY}}}},
        )
        await handle.result()
    assert leaks(await raw_histories(client, handle.id, handle.first_execution_run_id or "")) > 0


WAITING = {
    "name": "enc-wait",
    "steps": {"gate": {"uses": "wait", "with": {"event": "go"}}},
    "output": "${{ steps.gate.output }}",
}


async def test_runs_written_under_an_old_key_decode_after_rotation(client: Client) -> None:
    old = await encrypted_client(client, f"k1:{K1}")
    new = await encrypted_client(client, f"k2:{K2},k1:{K1}")
    queue = f"tq-{uuid.uuid4()}"
    async with dag_worker(old, Probe().activities(), task_queue=queue) as w:
        handle = await start_dag(old, w, WAITING, {"secret": CANARY})
        await eventually(lambda: _waiting(handle))
    async with dag_worker(new, Probe().activities(), task_queue=queue):
        rotated = new.get_workflow_handle(handle.id)
        await rotated.signal("send_event", {"name": "go", "payload": {"card": CANARY}})
        assert await rotated.result() == {"card": CANARY}
    key_ids = set()
    for history in await raw_histories(client, handle.id, handle.first_execution_run_id or ""):
        for event in history.events:
            if event.HasField("workflow_execution_signaled_event_attributes"):
                payload = event.workflow_execution_signaled_event_attributes.input.payloads[0]
                key_ids.add(payload.metadata[KEY_ID])
            if event.HasField("workflow_execution_started_event_attributes"):
                payload = event.workflow_execution_started_event_attributes.input.payloads[0]
                key_ids.add(payload.metadata[KEY_ID])
    assert key_ids == {b"k1", b"k2"}
    assert leaks(await raw_histories(client, handle.id, handle.first_execution_run_id or "")) == 0


async def _waiting(handle: Any) -> bool:
    p = await progress(handle)
    return any(s.step == "gate" and s.status.value == "running" for s in p.steps)


async def test_a_payload_moved_to_another_tenants_run_does_not_decode(
    client: Client, secret_client: Client
) -> None:
    async with dag_worker(secret_client, Probe().activities()) as w:
        source = await start_dag(secret_client, w, WAITING, tenant="acme")
        same_tenant = await start_dag(secret_client, w, WAITING, tenant="acme")
        other_tenant = await start_dag(secret_client, w, WAITING, tenant="globex")
        for handle in (source, same_tenant, other_tenant):
            await eventually(lambda h=handle: _waiting(h))
        await source.signal("send_event", {"name": "go", "payload": {"card": CANARY}})
        assert await source.result() == {"card": CANARY}
        history = await client.get_workflow_handle(source.id).fetch_history()
        signal = next(
            e.workflow_execution_signaled_event_attributes
            for e in history.events
            if e.HasField("workflow_execution_signaled_event_attributes")
        )
        copied = signal.input.payloads[0]

        async def replay_into(workflow_id: str) -> None:
            await client.workflow_service.signal_workflow_execution(
                SignalWorkflowExecutionRequest(
                    namespace=client.namespace,
                    workflow_execution=WorkflowExecution(workflow_id=workflow_id),
                    signal_name="send_event",
                    input=Payloads(payloads=[copied]),
                    identity="attacker",
                    request_id=str(uuid.uuid4()),
                )
            )

        await replay_into(same_tenant.id)
        assert await same_tenant.result() == {"card": CANARY}, "the copy is a valid payload"

        await replay_into(other_tenant.id)

        async def task_failed() -> bool:
            events = (await client.get_workflow_handle(other_tenant.id).fetch_history()).events
            return any(e.HasField("workflow_task_failed_event_attributes") for e in events)

        await eventually(task_failed, within=15)
        events = (await client.get_workflow_handle(other_tenant.id).fetch_history()).events
        failed = next(e for e in events if e.HasField("workflow_task_failed_event_attributes"))
        failure = failed.workflow_task_failed_event_attributes.failure
        assert failure.application_failure_info.type == "DecryptionError"
        described = await other_tenant.describe()
        assert described.status is not None and described.status.name == "RUNNING"
        await other_tenant.terminate("test over")


def test_the_codec_binds_the_tenant_and_the_key() -> None:
    keyring = Keyring.parse(f"k1:{K1}")
    plain = Payload(metadata={"encoding": b"json/plain"}, data=CANARY.encode())
    sealed = encrypt(keyring, plain, "acme")
    assert CANARY.encode() not in sealed.SerializeToString()
    assert decrypt(keyring, sealed) == plain
    forged = Payload()
    forged.CopyFrom(sealed)
    forged.metadata[TENANT] = b"globex"
    with pytest.raises(DecryptionError):
        decrypt(keyring, forged)
    with pytest.raises(DecryptionError):
        decrypt(Keyring.parse(f"k2:{K2}"), sealed)
    assert tenant_of("acme/d/1") == "acme" and tenant_of("loose") == ""
    assert repr(keyring) == "Keyring(current='k1', ids=['k1'])"


async def test_the_codec_refuses_another_tenants_payload() -> None:
    keyring = Keyring.parse(f"k1:{K1}")
    codec = EncryptionCodec(keyring)
    acme = codec.with_context(WorkflowSerializationContext("default", "acme/d/1"))
    globex = codec.with_context(WorkflowSerializationContext("default", "globex/d/1"))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=CANARY.encode())
    [sealed] = await acme.encode([plain])
    assert sealed.metadata[TENANT] == b"acme"
    assert await acme.decode([sealed]) == [plain]
    assert await codec.decode([sealed]) == [plain], "with no run in view, any tenant's"
    with pytest.raises(DecryptionError, match="tenant 'acme'"):
        await globex.decode([sealed])
    [instance] = await codec.encode([plain])
    assert await globex.decode([instance]) == [plain], "no tenant: operators' payloads"
    assert await globex.decode([plain]) == [plain], "unencrypted payloads pass through"


@pytest.mark.parametrize(
    "keys, message",
    [
        ("k1", "id:base64key"),
        ("k1:not base64!", "not valid base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "16, 24 or 32 bytes"),
        (f"k1:{K1},k1:{K2}", "given twice"),
        (" , ", "no encryption key"),
    ],
)
def test_bad_keyrings_are_refused_without_their_keys(keys: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        Keyring.parse(keys)
    assert K1 not in str(error.value) and "not base64!" not in str(error.value)


async def test_one_setting_turns_it_on_for_the_worker_and_the_cli(
    tmp_path: Path, client: Client, temporal_address: str
) -> None:
    env = {**os.environ, "DAGFLOW_ENCRYPTION_KEYS": f"k1:{K1}"}
    queue = f"tq-{uuid.uuid4()}"
    definition = tmp_path / "echo.json"
    definition.write_text(
        json.dumps(
            {
                "name": "cli-secret",
                "steps": {"echo": {"uses": "transform", "with": {"value": "${{ input.card }}"}}},
                "output": "${{ steps.echo.output }}",
            }
        )
    )
    worker = await asyncio.create_subprocess_exec(
        DAGFLOW, "worker", "--address", temporal_address, "--task-queue", queue, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        run = await asyncio.create_subprocess_exec(
            DAGFLOW, "run", str(definition), "--input", json.dumps({"card": CANARY}), "--wait",
            "--json", "--address", temporal_address, "--task-queue", queue, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(run.communicate(), 60)
        assert run.returncode == 0, err.decode()
        report = json.loads(out)
        assert report["output"] == CANARY, "the CLI decodes what the worker encrypted"
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), 30)
    assert worker.stdout is not None
    log = (await worker.stdout.read()).decode()
    assert K1 not in log
    histories = await raw_histories(client, report["workflow_id"], report["run_id"])
    assert leaks(histories) == 0
    started = histories[0].events[0].workflow_execution_started_event_attributes
    assert started.input.payloads[0].metadata[KEY_ID] == b"k1"

    bad = await asyncio.create_subprocess_exec(
        DAGFLOW, "run", str(definition), "--address", temporal_address,
        env={**env, "DAGFLOW_ENCRYPTION_KEYS": "k1:c2hvcnQta2V5"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(bad.communicate(), 60)
    assert bad.returncode == 2, err.decode()
    assert "16, 24 or 32 bytes" in err.decode()
    assert "c2hvcnQta2V5" not in out.decode() + err.decode(), "keys are never shown"
