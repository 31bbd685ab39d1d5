"""Shared by the engine benchmarks: a dev server, a worker, a no-op step, timing helpers.

Benchmarks are plain scripts (``python bench/<name>.py``) run from a checkout: this module puts
the checkout on ``sys.path`` so they can reuse the test helpers in ``tests/``.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import temporalio
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from worker.client import DATA_CONVERTER

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from starter.devserver import temporal_binary  # noqa: E402
from tests.engine import chain_definition, start_dag  # noqa: E402
from tests.history import history_lengths, run_histories  # noqa: E402
from worker.worker import build_worker, dagflow_interceptors, sandbox_runner  # noqa: E402
from workflows import search_attributes  # noqa: E402
from workflows.dag_run import DagForEachBatch, DagRun  # noqa: E402
from workflows.types import StepInput  # noqa: E402

__all__ = [
    "MeteredExecutor",
    "bench_worker",
    "chain_definition",
    "dev_server",
    "history_lengths",
    "machine",
    "median",
    "noop",
    "run_histories",
    "run_script",
    "running",
    "start_dag",
    "timed",
]


@activity.defn(name="noop")
async def noop(inp: StepInput) -> Any:
    """A plugin-style step that returns ``with.value`` (or its key) at once."""
    return inp.with_.get("value", inp.key)


@asynccontextmanager
async def dev_server(db_filename: str | None = None) -> AsyncIterator[Client]:
    """A Temporal dev server on free ports with dagflow's search attributes; stopped after.

    In memory by default; with ``db_filename`` it keeps its state in that SQLite file
    (``temporal server start-dev --db-filename``), as a dev server that survives restarts does.
    """
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        dev_server_database_filename=db_filename,
        search_attributes=search_attributes.ALL,
        data_converter=DATA_CONVERTER,
    )
    try:
        yield env.client
    finally:
        await env.shutdown()


class MeteredExecutor(ThreadPoolExecutor):
    """The workflow task executor the SDK makes by default (500 threads) that also adds up the
    CPU time of the workflow activations it runs: the cost of the workflow code itself, apart
    from the worker's payload handling, the activities and the client in the same process."""

    def __init__(self) -> None:
        super().__init__(max_workers=500, thread_name_prefix="temporal_workflow_")
        self.cpu = 0.0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn`` on a workflow thread, counting its thread CPU time."""

        def metered() -> Any:
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                used = time.thread_time() - start
                with self._lock:
                    self.cpu += used

        return super().submit(metered)


def bench_worker(
    client: Client,
    activities: Sequence[Callable[..., Any]] = (noop,),
    extra_workflows: Sequence[type] = (),
    executor: MeteredExecutor | None = None,
) -> Worker:
    """A worker on a fresh task queue, built like ``build_worker``'s, plus ``extra_workflows``.

    Without extra workflows or an executor it is ``build_worker``'s own. Otherwise it is the
    same configuration with the baselines registered beside DagRun (so both share the task
    queue, the sandbox, the interceptors, the slots and the eager activity dispatch)
    and ``executor`` running the workflow activations. (A second worker on the same queue is
    refused by the SDK, and one on another queue would not get eager dispatch for DagRun's
    activities.)
    """
    task_queue = f"bench-{uuid.uuid4()}"
    grace = timedelta(seconds=1)
    if not extra_workflows and executor is None:
        return build_worker(
            client, task_queue=task_queue, activities=activities, shutdown_grace=grace
        )
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[DagRun, DagForEachBatch, *extra_workflows],
        activities=list(activities),
        interceptors=dagflow_interceptors(),
        workflow_runner=sandbox_runner(),
        workflow_task_executor=executor,
        max_concurrent_activities=200,
        graceful_shutdown_timeout=grace,
    )


@asynccontextmanager
async def running(worker: Worker, shutdown_limit: float = 30.0) -> AsyncIterator[Worker]:
    """Run ``worker`` inside the block; afterwards give its shutdown ``shutdown_limit`` seconds.

    A worker that holds workflows it could not evict (after a deadlock-detector failure) never
    finishes shutting down; a benchmark reports that and moves on instead of hanging.
    """
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        try:
            await asyncio.wait_for(worker.shutdown(), shutdown_limit)
        except TimeoutError:
            print(f"worker did not shut down within {shutdown_limit:.0f} s; left behind")
            task.cancel()


def run_script(main: Callable[[], Coroutine[Any, Any, int | None]]) -> None:
    """Run a benchmark's ``main()`` and exit with its status, skipping interpreter teardown.

    Temporal's Rust runtime can abort CPython's finalisation (temporalio/sdk-python#300), and
    a worker left with stuck workflows would keep the process alive: once output is flushed
    (and the dev server stopped by ``main``), the process leaves at once, as ``dagflow`` does.
    """
    try:
        code = asyncio.run(main()) or 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def timed(run: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """Wall seconds of ``await run()``, and its result."""
    start = time.perf_counter()
    result = await run()
    return time.perf_counter() - start, result


def machine() -> str:
    """One line naming the date, the machine and the versions, for the record."""
    today = datetime.date.today().isoformat()
    return (
        f"{today} · {os.cpu_count()} CPUs · Python {platform.python_version()} · "
        f"temporalio {temporalio.__version__} · {_server_version()}"
    )


def _server_version() -> str:
    try:
        out = subprocess.run(
            [temporal_binary(), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "temporal CLI (version unknown)"
    return out.strip().replace("temporal version", "temporal CLI") or "temporal CLI"


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)
