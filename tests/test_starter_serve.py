"""`dagflow serve` and `dagflow db upgrade` as a person runs them: real processes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from starter.client import DagflowClient
from starter.migrations import current_revision, head_revision
from tests.starter import INSTANCE_KEY, Databases

DAGFLOW = str(Path(sys.executable).parent / "dagflow")


async def test_serve_migrates_and_answers_until_sigterm(
    databases: Databases, temporal_address: str
) -> None:
    url = await databases.empty()
    process = await asyncio.create_subprocess_exec(
        DAGFLOW,
        "serve",
        "--port",
        "0",
        "--database-url",
        url,
        "--address",
        temporal_address,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "DAGFLOW_INSTANCE_KEY": INSTANCE_KEY},
    )
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        found = re.search(r"serving on (http://\S+)", line)
        assert found, line
        assert await current_revision(url) == head_revision()
        async with DagflowClient(found.group(1), INSTANCE_KEY) as client:
            assert (await client.health()).status == "ok"
            ready = await client.ready()
            assert (ready.database, ready.temporal) == ("ok", "ok")
            assert (await client.instance.create_tenant("served")).id == "served"
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0


async def test_db_upgrade(databases: Databases) -> None:
    url = await databases.empty()
    process = await asyncio.create_subprocess_exec(
        DAGFLOW, "db", "upgrade", "--database-url", url, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    assert f"at revision {head_revision()}" in out.decode()
    assert await current_revision(url) == head_revision()
