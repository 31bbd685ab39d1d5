"""The alert notifier: evaluates every tenant's alert rules against Temporal visibility and
POSTs each alert once, signed like the ``webhook`` step (see docs/operating.md, "Alerts").

Every ``DAGFLOW_ALERTS_INTERVAL`` seconds, for each enabled rule:

- ``run_failed``: the tenant's runs (of the rule's definition, if it names one) that closed
  failed, timed out or terminated since the rule was created, looking back at most
  :data:`LOOKBACK`; one alert per run;
- ``step_parked``: open runs whose ``DagStatus`` is ``NeedsAttention``; the ``progress`` query
  names the parked steps; one alert per parked step and attempt count (a step retried by an
  operator that parks again alerts again);
- ``failure_rate``: the runs that closed within the rule's window; when at least ``min_runs``
  closed and the failed share reaches ``threshold`` percent, one alert per window-length period.

An alert is first inserted into ``alert_deliveries``, whose ``(rule_id, event_key)`` is
unique: the process whose insert wins sends it, so several starters, and evaluations that see
the same event again, deliver it once. Delivery retries network errors, 429 and 5xx with
exponential backoff, up to ``DAGFLOW_ALERT_ATTEMPTS`` attempts, with the same Idempotency-Key.
A pending delivery is leased to its sender (``lease_until``); when the lease runs out (the
sender stopped), the next evaluation of any starter takes it over at its next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from yarl import URL

from activities.netguard import AddressGuard, GuardedResolver
from activities.secrets import SecretNotFoundError
from activities.webhook import EVENT_HEADER, IDEMPOTENCY_HEADER, signed_headers
from starter.db.models import AlertRule
from starter.repos import alerts as repo
from starter.repos.alerts import alert_secrets
from starter.routes.runs import RPC_TIMEOUT, run_status, runs_query, timestamp
from starter.settings import ServiceSettings
from starter.temporal import TemporalLink
from workflows.types import Progress, RunStatus

log = logging.getLogger("dagflow.starter.alerts")

LOOKBACK = timedelta(hours=1)
"""How far back ``run_failed`` looks: runs that failed while no notifier ran for longer are
not alerted."""
PAGE = 1000
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)
PROGRESS_TIMEOUT = timedelta(seconds=5)
"""How long ``step_parked`` waits for one run's ``progress`` query (a run no worker polls for
does not hold up the others)."""
PARALLEL_QUERIES = 10
LEASE = timedelta(seconds=30)
"""How long a pending delivery stays with its sender past its next attempt's start (more
than one attempt's timeout); after that, another starter's notifier takes it over."""
FAILED = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT})
_CLOSED = "ExecutionStatus != 'Running' AND ExecutionStatus != 'ContinuedAsNew'"
_FAILED = (
    "(ExecutionStatus = 'Failed' OR ExecutionStatus = 'TimedOut' OR ExecutionStatus = 'Terminated')"
)


def alert_body(payload: dict[str, Any]) -> bytes:
    """The bytes POSTed (and signed): compact JSON, keys sorted, the same on every attempt."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


class Notifier:
    """Evaluates alert rules and delivers their alerts.

    Args:
        settings: Interval, attempts, backoff, allowed networks, the alert secrets file.
        sessions: The starter's session factory.
        temporal: The starter's link to Temporal.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        sessions: async_sessionmaker[AsyncSession],
        temporal: TemporalLink,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._temporal = temporal
        self._guard = AddressGuard(settings.allowed_networks)
        self._secrets = alert_secrets(settings)
        self._http: aiohttp.ClientSession | None = None
        self._deliveries: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Evaluate the rules every interval until cancelled; errors are logged, not fatal."""
        while True:
            await asyncio.sleep(self._settings.alerts_interval)
            try:
                await self.evaluate()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the loop must outlive one bad round
                log.warning("alert evaluation failed: %s", error)

    async def close(self) -> None:
        """Stop deliveries in flight (they stay ``pending`` until their lease runs out and a
        notifier takes them over) and close the HTTP session."""
        for task in list(self._deliveries):
            task.cancel()
        for task in list(self._deliveries):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            await self._http.close()

    async def evaluate(self, now: datetime | None = None) -> int:
        """One round over every enabled rule; returns how many new alerts it started sending."""
        now = now or datetime.now(UTC)
        await self._resume(now)
        async with self._sessions() as session:
            rules = await repo.enabled_rules(session)
        if not rules:
            return 0
        client = await self._temporal.client()
        started = 0
        for rule in rules:
            try:
                async for event_key, payload in self._events(client, rule, now):
                    started += await self._alert(rule, event_key, payload)
            except Exception as error:  # one rule must not stop the others
                log.warning("alert rule %s of %s: %s", rule.id, rule.tenant_id, error)
        return started

    async def wait_idle(self) -> None:
        """Wait until the deliveries started so far have finished (for tests and shutdown)."""
        while self._deliveries:
            await asyncio.gather(*self._deliveries, return_exceptions=True)

    # --- what each kind of rule sees ------------------------------------------------------

    def _events(
        self, client: Client, rule: AlertRule, now: datetime
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        if rule.kind == "run_failed":
            return self._failed_runs(client, rule, now)
        if rule.kind == "step_parked":
            return self._parked_steps(client, rule)
        return self._failure_rate(client, rule, now)

    def _base(self, rule: AlertRule, kind: str) -> dict[str, Any]:
        return {
            "alert": kind,
            "rule": rule.id,
            "tenant": rule.tenant_id,
            "definition": rule.definition_name,
            "run": None,
            "workflow_id": None,
            "status": None,
            "step": None,
            "error": None,
        }

    async def _failed_runs(
        self, client: Client, rule: AlertRule, now: datetime
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        since = max(rule.created_at, now - LOOKBACK)
        query = (
            f"{runs_query(rule.tenant_id, definition=rule.definition_name)} "
            f"AND CloseTime >= {timestamp(since)} AND {_FAILED}"
        )
        async for execution in client.list_workflows(
            query, page_size=PAGE, rpc_timeout=RPC_TIMEOUT
        ):
            event_key = f"run_failed:{execution.id}:{execution.run_id}"
            async with self._sessions() as session:
                if await repo.delivered_already(session, rule.id, event_key):
                    continue
            handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
            error: str | None = None
            try:
                await handle.result(follow_runs=False, rpc_timeout=RPC_TIMEOUT)
            except WorkflowFailureError as failure:
                cause = failure.cause
                error = getattr(cause, "message", None) or str(cause)
            except Exception as other:  # the alert goes out without the reason
                error = str(other)
            status = run_status(execution.status, execution.typed_search_attributes)
            closed = execution.close_time or now
            yield (
                event_key,
                {
                    **self._base(rule, "run_failed"),
                    **_run_fields(execution.id),
                    "status": status.value,
                    "error": error,
                    "at": closed.astimezone(UTC).isoformat(),
                },
            )

    async def _parked_steps(
        self, client: Client, rule: AlertRule
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        query = runs_query(
            rule.tenant_id, definition=rule.definition_name, status=RunStatus.NEEDS_ATTENTION
        )
        executions = [
            execution
            async for execution in client.list_workflows(
                query, page_size=PAGE, rpc_timeout=RPC_TIMEOUT
            )
        ]
        gate = asyncio.Semaphore(PARALLEL_QUERIES)

        async def progress_of(execution: Any) -> Progress | None:
            handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
            async with gate:
                try:
                    progress: Progress = await handle.query(
                        "progress", result_type=Progress, rpc_timeout=PROGRESS_TIMEOUT
                    )
                    return progress
                except Exception as error:  # no worker answers: the other runs still alert
                    log.warning("alert rule %s: cannot read %s: %s", rule.id, execution.id, error)
                    return None

        answers = await asyncio.gather(*(progress_of(e) for e in executions))
        for execution, progress in zip(executions, answers, strict=True):
            if progress is None:
                continue
            for step in progress.steps:
                if step.status != "needs_attention":
                    continue
                event_key = (
                    f"step_parked:{execution.id}:{execution.run_id}:{step.step}:{step.attempts}"
                )
                at = step.finished_at or datetime.now(UTC)
                yield (
                    event_key,
                    {
                        **self._base(rule, "step_parked"),
                        **_run_fields(execution.id),
                        "status": RunStatus.NEEDS_ATTENTION.value,
                        "step": step.step,
                        "error": step.error,
                        "at": at.astimezone(UTC).isoformat(),
                    },
                )

    async def _failure_rate(
        self, client: Client, rule: AlertRule, now: datetime
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        window = rule.window_seconds or 1
        since = now - timedelta(seconds=window)
        query = (
            f"{runs_query(rule.tenant_id, definition=rule.definition_name)} "
            f"AND CloseTime >= {timestamp(since)} AND {_CLOSED}"
        )
        closed = failed = 0
        async for execution in client.list_workflows(
            query, page_size=PAGE, rpc_timeout=RPC_TIMEOUT
        ):
            closed += 1
            if run_status(execution.status, execution.typed_search_attributes) in FAILED:
                failed += 1
        threshold = rule.threshold or 100.0
        if closed < (rule.min_runs or 1) or failed * 100 < threshold * closed:
            return
        period = int(now.timestamp()) // window
        yield (
            f"failure_rate:{period}",
            {
                **self._base(rule, "failure_rate"),
                "failed": failed,
                "closed": closed,
                "rate": round(100 * failed / closed, 2),
                "threshold": threshold,
                "window_seconds": window,
                "at": now.astimezone(UTC).isoformat(),
            },
        )

    # --- delivery -------------------------------------------------------------------------

    async def _alert(self, rule: AlertRule, event_key: str, payload: dict[str, Any]) -> int:
        lease = datetime.now(UTC) + LEASE
        async with self._sessions() as session:
            row = await repo.claim(session, rule, event_key, payload, lease_until=lease)
        if row is None:
            return 0
        self._start(rule, row.id, row.idempotency_key, payload, 1)
        return 1

    async def _resume(self, now: datetime) -> None:
        """Take over the pending deliveries whose sender stopped (their lease ran out)."""
        async with self._sessions() as session:
            rows = await repo.take_over(session, now, now + LEASE)
            for row in rows:
                rule = await session.get(AlertRule, row.rule_id)
                if rule is not None:
                    log.info("alert %s: taking over at attempt %s", row.id, row.attempts + 1)
                    self._start(rule, row.id, row.idempotency_key, row.payload, row.attempts + 1)

    def _start(
        self, rule: AlertRule, delivery_id: int, key: str, payload: dict[str, Any], first: int
    ) -> None:
        task = asyncio.create_task(self._deliver(rule, delivery_id, key, payload, first))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(
        self, rule: AlertRule, delivery_id: int, key: str, payload: dict[str, Any], first: int
    ) -> None:
        """Send from attempt ``first`` on (a taken-over delivery gets at least one more)."""
        body = alert_body(payload)
        try:
            secret = self._secret(rule)
        except LookupError as missing:
            await self._record(delivery_id, "failed", None, str(missing))
            return
        attempts = max(self._settings.alert_attempts, first)
        for attempt in range(first, attempts + 1):
            status, error, retryable = await self._post(rule, body, secret, key)
            if status is not None and 200 <= status < 300:
                await self._record(delivery_id, "delivered", status, None)
                return
            final = not retryable or attempt == attempts
            delay = self._settings.alert_backoff * 2 ** (attempt - 1)
            lease = datetime.now(UTC) + timedelta(seconds=delay) + LEASE
            state = "failed" if final else "pending"
            await self._record(delivery_id, state, status, error, lease)
            if final:
                log.warning("alert %s of rule %s not delivered: %s", key, rule.id, error)
                return
            await asyncio.sleep(delay)

    def _secret(self, rule: AlertRule) -> str:
        if self._secrets is None:
            raise LookupError("the starter has no alert secrets file (DAGFLOW_ALERT_SECRETS_FILE)")
        try:
            return self._secrets.get(rule.tenant_id, rule.secret)
        except SecretNotFoundError as error:
            raise LookupError(str(error)) from None

    async def _post(
        self, rule: AlertRule, body: bytes, secret: str, key: str
    ) -> tuple[int | None, str | None, bool]:
        """One attempt: (HTTP status, error, whether another attempt may help)."""
        headers = signed_headers(secret, body)
        headers[IDEMPOTENCY_HEADER] = key
        headers[EVENT_HEADER] = rule.kind
        try:
            url = URL(rule.url)
            self._guard.check_literal(url.host or "")
            async with self._session().post(
                url, data=body, headers=headers, allow_redirects=False, timeout=REQUEST_TIMEOUT
            ) as answer:
                status = answer.status
        except ApplicationError as refused:  # the address guard
            return None, refused.message, False
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return None, f"{type(error).__name__}: {error}", True
        if 200 <= status < 300:
            return status, None, False
        retryable = status >= 500 or status == 429
        return status, f"the receiver answered {status}", retryable

    async def _record(
        self,
        delivery_id: int,
        status: str,
        http_status: int | None,
        error: str | None,
        lease_until: datetime | None = None,
    ) -> None:
        async with self._sessions() as session:
            await repo.record_attempt(
                session,
                delivery_id,
                status=status,
                http_status=http_status,
                error=error,
                lease_until=lease_until,
            )

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self._guard))
            self._http = aiohttp.ClientSession(connector=connector)
        return self._http


def _run_fields(workflow_id: str) -> dict[str, Any]:
    """``run`` (``definition/key``, the API's run id), ``definition`` and ``workflow_id``."""
    parts = workflow_id.split("/")
    fields: dict[str, Any] = {"workflow_id": workflow_id}
    if len(parts) == 3:
        fields["run"] = f"{parts[1]}/{parts[2]}"
        fields["definition"] = parts[1]
    return fields


__all__ = ["Notifier", "alert_body"]
