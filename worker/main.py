"""The worker process: connect, load the step kinds, poll until SIGTERM or SIGINT, drain."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.client import HttpClient
from activities.interceptor import LinearBackoffInterceptor
from activities.netguard import AddressGuard
from activities.protection import HostProtection
from activities.registry import builtin_step_activities, load_plugins
from activities.secrets import SecretStore
from worker.client import connect
from worker.drain import DrainTracker
from worker.logs import quiet_step_failures
from worker.metrics import prometheus_runtime
from worker.settings import Settings
from worker.worker import build_worker

log = logging.getLogger("dagflow.worker")


def step_activities(settings: Settings, http: HttpClient) -> dict[str, Callable[..., Any]]:
    """Every step activity this worker serves, by kind: the built-in ones and the plugins."""
    secrets = SecretStore(file=settings.secrets_file, environ=os.environ)
    kinds: dict[str, Callable[..., Any]] = dict(
        builtin_step_activities(client=http, secrets=secrets)
    )
    kinds.update(load_plugins())
    return kinds


def http_client(settings: Settings) -> HttpClient:
    """The worker's one HTTP client, guarded by the configured allowed networks, with the
    default circuit breaker and rate limit per host."""
    return HttpClient(
        guard=AddressGuard(settings.allowed_networks),
        protection=HostProtection(
            circuit_breaker=settings.http_circuit_breaker, rate_limit=settings.http_rate_limit
        ),
    )


def make_worker(
    client: Client,
    settings: Settings,
    http: HttpClient,
    *,
    workflows: bool = True,
    tracker: DrainTracker | None = None,
) -> Worker:
    """The Worker for ``settings``: DagRun (unless ``workflows`` is False) and every step kind;
    ``tracker`` counts its activities when it drains."""
    return build_worker(
        client,
        task_queue=settings.task_queue,
        activities=list(step_activities(settings, http).values()),
        interceptors=[LinearBackoffInterceptor(), *([tracker] if tracker else [])],
        max_concurrent_activities=settings.max_concurrent_activities,
        max_cached_workflows=settings.max_cached_workflows,
        shutdown_grace=timedelta(seconds=settings.shutdown_grace),
        workflows=workflows,
    )


async def run_worker(
    settings: Settings, *, workflows: bool = True, stop: asyncio.Event | None = None
) -> None:
    """Run a worker until ``stop`` is set (by default: until SIGTERM or SIGINT), then drain:
    stop polling and let running activities finish within ``settings.shutdown_grace``, then
    cancel those still running and hand them back to Temporal to retry (see
    :mod:`worker.drain`). A second SIGTERM or SIGINT during the drain cancels them at once.

    Args:
        settings: Where Temporal is, the task queue, the network guard, where to serve
            metrics (``metrics_address``: the runtime is made before the client connects).
        workflows: Whether to run DagRun too (False: an activity-only capability worker).
        stop: Set it to stop the worker; when None, SIGTERM and SIGINT set it.
    """
    quiet_step_failures()
    runtime = prometheus_runtime(settings.metrics_address) if settings.metrics_address else None
    client = await connect(settings.temporal_address, settings.namespace, runtime=runtime)
    if settings.metrics_address:
        log.info("metrics on http://%s/metrics", settings.metrics_address)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT) if stop is None else ()
    stop = stop or asyncio.Event()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    tracker = DrainTracker()
    async with AsyncExitStack() as stack:
        http = http_client(settings)
        stack.push_async_callback(http.close)
        worker = make_worker(client, settings, http, workflows=workflows, tracker=tracker)
        await stack.enter_async_context(worker)
        log.info(
            "worker polling task queue %r on %s (namespace %s)",
            settings.task_queue,
            settings.temporal_address,
            settings.namespace,
        )
        await stop.wait()
        log.info(
            "shutting down: stopped polling; %d activities running get %ss to finish "
            "(signal again to cancel them now)",
            tracker.begin(),
            settings.shutdown_grace,
        )
        for sig in signals:
            loop.add_signal_handler(sig, _cancel_now, tracker)
    drain = tracker.draining
    if drain is not None:
        log.info(
            "shut down: %d activities finished, %d cancelled (Temporal retries them elsewhere)",
            drain.finished,
            drain.cancelled,
        )
    for sig in signals:
        loop.remove_signal_handler(sig)


def _cancel_now(tracker: DrainTracker) -> None:
    log.warning("second signal: cancelling %d running activities now", tracker.cancel_all())
