"""A typed async client of the starter service.

It returns the same pydantic models the service answers with, and raises the service's own
error classes (:mod:`starter.errors`) with the problem details::

    async with DagflowClient("http://127.0.0.1:8080", api_key) as dagflow:
        stored = await dagflow.definitions.create(Path("order.yaml").read_text())
        try:
            await dagflow.definitions.get("missing")
        except NotFound as error:
            print(error.problem.detail)
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ValidationError

from starter.api import (
    DefinitionDetail,
    DefinitionSummary,
    Health,
    Instantiate,
    Key,
    KeyCreate,
    NewKey,
    Page,
    Rollback,
    Tenant,
    TenantCreate,
    Validation,
    Version,
    VersionInfo,
)
from starter.api.alerts import AlertDelivery, AlertRule
from starter.api.bindings import BindingUpdate
from starter.api.commands import Binding, BindingCreate, Command, CommandSend
from starter.api.metrics import MetricsSummary
from starter.api.runs import Action, RunDetail, RunRef, RunSummary, RunTrace, StepErrors
from starter.errors import PROBLEM_JSON, ApiError, ProblemDetails
from workflows.definition import Definition

M = TypeVar("M", bound=BaseModel)
LARGE_BODY = 1024 * 1024
"""Bodies over this many bytes are streamed (a run's input may be several MB)."""
T = TypeVar("T")

DefinitionBody = str | Mapping[str, Any] | Definition
"""A definition to send: YAML or JSON text, loaded data, or a model."""


class DagflowClient:
    """The starter service's API, one method per route.

    Request bodies are built without checking them here: the service checks them and answers
    :class:`~starter.errors.Invalid` naming each field, as it does for every other client.

    Args:
        base_url: Where the service is, e.g. ``http://127.0.0.1:8080``.
        api_key: A tenant key (for ``definitions``) or an instance key (for ``instance``).
        session: An aiohttp session to use (and not close); a new one by default.
        timeout: Seconds a request may take.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.definitions = DefinitionsApi(self, "/v1")
        """The caller's tenant's definitions (and, read-only, the instance's)."""
        self.instance = InstanceApi(self)
        """Instance administration (instance keys only)."""
        self.runs = RunsApi(self)
        """The caller's tenant's runs (tenant keys only)."""
        self.bindings = BindingsApi(self, "/v1")
        """The caller's tenant's bindings (and, read-only, the instance's)."""
        self.commands = CommandsApi(self)
        """The caller's tenant's commands."""
        self.alerts = AlertsApi(self)
        """The caller's tenant's alert rules and alert deliveries."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if the client made it."""
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    async def health(self) -> Health:
        """``GET /healthz``: whether the process is up."""
        return await self.request("GET", "/healthz", Health)

    async def ready(self) -> Health:
        """``GET /readyz``: whether the database and Temporal answer.

        Raises:
            Unavailable: When one does not (the problem is the readiness report).
        """
        return await self.request("GET", "/readyz", Health)

    async def openapi(self) -> dict[str, Any]:
        """``GET /v1/openapi.json``: the OpenAPI 3.1 document."""
        answer = await self.send("GET", "/v1/openapi.json")
        document: dict[str, Any] = json.loads(answer)
        return document

    async def metrics(self) -> str:
        """``GET /metrics``: the service's metrics in the Prometheus text format."""
        return (await self.send("GET", "/metrics")).decode()

    async def metrics_summary(self, window: str = "24h") -> MetricsSummary:
        """``GET /v1/metrics/summary``: the tenant's runs per definition over ``window``
        (e.g. ``"1h"``, ``"7d"``): counts by outcome, success rate, p50/p95 duration.

        Raises:
            BadRequest: The window is not a duration, or is over 90 days.
        """
        return await self.request(
            "GET", "/v1/metrics/summary", MetricsSummary, params={"window": window}
        )

    async def request(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        json_body: BaseModel | None = None,
        text: str | None = None,
        content_type: str = "application/json",
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> M:
        """Send one request and read the answer into ``model``.

        Raises:
            ApiError: The subclass for the answer's status, with its problem details.
        """
        if json_body is not None:
            text = json_body.model_dump_json(by_alias=True, exclude_unset=True)
        answer = await self.send(
            method, path, text=text, content_type=content_type, params=params, headers=headers
        )
        return model.model_validate_json(answer)

    async def send(
        self,
        method: str,
        path: str,
        *,
        text: str | None = None,
        content_type: str = "application/json",
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """Send one request and return the body of a successful answer.

        Raises:
            ApiError: The subclass for the answer's status, with its problem details.
        """
        headers = {**self._headers, **(headers or {})}
        if text is not None:
            headers["Content-Type"] = content_type
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        raw = text.encode() if text is not None else None
        data: bytes | io.BytesIO | None = raw
        if raw is not None and len(raw) > LARGE_BODY:
            data = io.BytesIO(raw)  # aiohttp streams it instead of warning about the loop
        async with self._http().request(
            method,
            self.base_url + path,
            data=data,
            headers=headers,
            params=query,
            timeout=self._timeout,
        ) as answer:
            body = await answer.read()
            if answer.status >= 400:
                raise _error(answer, body)
            return body

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session


class InstanceApi:
    """``/v1/instance``: tenants, keys and instance definitions (instance keys only)."""

    def __init__(self, client: DagflowClient) -> None:
        self._client = client
        self.definitions = DefinitionsApi(client, "/v1/instance")
        """Instance definitions: every tenant reads them, only instance keys write them."""
        self.bindings = BindingsApi(client, "/v1/instance")
        """Instance bindings: they run first for every tenant's commands."""

    async def create_tenant(self, tenant_id: str, name: str | None = None) -> Tenant:
        """Create a tenant."""
        body = TenantCreate.model_construct(id=tenant_id, name=name)
        return await self._client.request("POST", "/v1/instance/tenants", Tenant, json_body=body)

    async def list_tenants(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[Tenant]:
        """One page of tenants."""
        params = {"limit": limit, "cursor": cursor}
        return await self._client.request(
            "GET", "/v1/instance/tenants", Page[Tenant], params=params
        )

    async def get_tenant(self, tenant_id: str) -> Tenant:
        """One tenant."""
        return await self._client.request("GET", f"/v1/instance/tenants/{_seg(tenant_id)}", Tenant)

    async def create_key(self, name: str, *, tenant: str | None = None) -> NewKey:
        """Issue a key for ``tenant``, or an instance key; ``key`` is shown only here."""
        body = KeyCreate.model_construct(name=name)
        return await self._client.request("POST", _keys_path(tenant), NewKey, json_body=body)

    async def list_keys(
        self, *, tenant: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page[Key]:
        """One page of a tenant's keys, or of instance keys."""
        params = {"limit": limit, "cursor": cursor}
        return await self._client.request("GET", _keys_path(tenant), Page[Key], params=params)

    async def revoke_key(self, key_id: str, *, tenant: str | None = None) -> Key:
        """Revoke a tenant's key, or an instance key."""
        path = f"{_keys_path(tenant)}/{_seg(key_id)}"
        return await self._client.request("DELETE", path, Key)


class DefinitionsApi:
    """Definitions of one scope: the tenant's (``/v1``) or the instance's (``/v1/instance``)."""

    def __init__(self, client: DagflowClient, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._base = f"{prefix}/definitions"

    async def create(self, definition: DefinitionBody) -> DefinitionDetail:
        """Store a new definition as version 1.

        Raises:
            Invalid: With every problem of the definition in ``errors``.
            Conflict: If the name exists.
        """
        return await self._send_definition("POST", self._base, definition, DefinitionDetail)

    async def list(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        name_prefix: str | None = None,
        active: bool | None = None,
        template: bool | None = None,
        scope: str | None = None,
    ) -> Page[DefinitionSummary]:
        """One page of definitions, by name."""
        params = {
            "limit": limit,
            "cursor": cursor,
            "name_prefix": name_prefix,
            "active": active,
            "template": template,
            "scope": scope,
        }
        return await self._client.request("GET", self._base, Page[DefinitionSummary], params=params)

    async def iterate(self, **filters: Any) -> AsyncIterator[DefinitionSummary]:
        """Every definition matching the filters of :meth:`list`, page after page."""
        async for item in pages(lambda cursor: self.list(cursor=cursor, **filters)):
            yield item

    async def get(self, name: str) -> DefinitionDetail:
        """The current version of a definition, with its content."""
        return await self._client.request("GET", self._named(name), DefinitionDetail)

    async def update(self, name: str, definition: DefinitionBody) -> DefinitionDetail:
        """Make ``definition`` the current version (``created`` says whether it is new)."""
        return await self._send_definition("PUT", self._named(name), definition, DefinitionDetail)

    async def versions(
        self, name: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[VersionInfo]:
        """One page of versions, newest first."""
        params = {"limit": limit, "cursor": cursor}
        path = f"{self._named(name)}/versions"
        return await self._client.request("GET", path, Page[VersionInfo], params=params)

    async def version(self, name: str, version: int) -> Version:
        """One version with its content."""
        path = f"{self._named(name)}/versions/{int(version)}"
        return await self._client.request("GET", path, Version)

    async def rollback(self, name: str, version: int) -> DefinitionDetail:
        """Make an earlier version the current one."""
        path = f"{self._named(name)}/rollback"
        body = Rollback.model_construct(version=version)
        return await self._client.request("POST", path, DefinitionDetail, json_body=body)

    async def deactivate(self, name: str) -> DefinitionDetail:
        """Stop new runs of a definition."""
        path = f"{self._named(name)}/deactivate"
        return await self._client.request("POST", path, DefinitionDetail)

    async def activate(self, name: str) -> DefinitionDetail:
        """Let runs of a deactivated definition start again."""
        path = f"{self._named(name)}/activate"
        return await self._client.request("POST", path, DefinitionDetail)

    async def validate(self, definition: DefinitionBody) -> Validation:
        """Every problem of a definition; nothing is stored."""
        return await self._send_definition("POST", f"{self._base}/validate", definition, Validation)

    async def instantiate(
        self, template: str, name: str, params: Mapping[str, Any] | None = None
    ) -> DefinitionDetail:
        """Render a template into a new definition ``name``.

        Raises:
            Invalid: Naming each param that is missing, unknown or of the wrong type.
        """
        path = f"{self._prefix}/templates/{_seg(template)}/instantiate"
        body = Instantiate.model_construct(name=name, params=dict(params or {}))
        return await self._client.request("POST", path, DefinitionDetail, json_body=body)

    async def graph(self, name: str, *, version: int | None = None, format: str = "svg") -> str:
        """The DAG of a definition (current or ``version``): SVG, or Mermaid text with
        ``format="mermaid"``."""
        params = {"version": version, "format": format}
        answer = await self._client.send("GET", f"{self._named(name)}/graph.svg", params=params)
        return answer.decode()

    def _named(self, name: str) -> str:
        return f"{self._base}/{_seg(name)}"

    async def _send_definition(
        self, method: str, path: str, definition: DefinitionBody, model: type[M]
    ) -> M:
        if isinstance(definition, Definition):
            text = definition.model_dump_json(by_alias=True, exclude_unset=True)
            content_type = "application/json"
        elif isinstance(definition, str):
            text = definition
            is_json = definition.lstrip().startswith("{")
            content_type = "application/json" if is_json else "application/yaml"
        else:
            text, content_type = json.dumps(definition), "application/json"
        return await self._client.request(method, path, model, text=text, content_type=content_type)


class BindingsApi:
    """Bindings of command types to definitions of one scope: the tenant's (``/v1``, whose
    lists show the instance's bindings too) or the instance's (``/v1/instance``)."""

    def __init__(self, client: DagflowClient, prefix: str) -> None:
        self._client = client
        self._base = f"{prefix}/bindings"

    async def create(
        self,
        type: str,
        definition: str,
        *,
        version: int | None = None,
        position: int | None = None,
    ) -> Binding:
        """Bind command type ``type`` to ``definition`` (pinned to ``version`` if given).

        Raises:
            Invalid: The caller cannot run the definition (or version), or a bad field.
            Conflict: The scope binds the definition to the type already.
        """
        body = BindingCreate.model_construct(
            type=type, definition=definition, version=version, position=position
        )
        return await self._client.request("POST", self._base, Binding, json_body=body)

    async def list(
        self,
        *,
        type: str | None = None,
        scope: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Binding]:
        """One page of bindings, by type and then in the order commands start them."""
        params = {"type": type, "scope": scope, "limit": limit, "cursor": cursor}
        return await self._client.request("GET", self._base, Page[Binding], params=params)

    async def iterate(self, **filters: Any) -> AsyncIterator[Binding]:
        """Every binding matching the filters of :meth:`list`, page after page."""
        async for item in pages(lambda cursor: self.list(cursor=cursor, **filters)):
            yield item

    async def get(self, binding_id: int) -> Binding:
        """One binding."""
        return await self._client.request("GET", f"{self._base}/{int(binding_id)}", Binding)

    async def update(self, binding_id: int, **changes: int | None) -> Binding:
        """Change a binding: ``version=N`` pins a version (``version=None`` unpins it),
        ``position=N`` moves it among the scope's bindings of its type.

        Raises:
            Forbidden: A tenant key naming an instance binding.
            Invalid: The scope cannot run that version, or a bad field.
        """
        body = BindingUpdate.model_construct(None, **changes)  # unchecked: the service checks
        path = f"{self._base}/{int(binding_id)}"
        return await self._client.request("PATCH", path, Binding, json_body=body)

    async def delete(self, binding_id: int) -> Binding:
        """Remove a binding.

        Raises:
            Forbidden: A tenant key naming an instance binding.
        """
        return await self._client.request("DELETE", f"{self._base}/{int(binding_id)}", Binding)


class AlertsApi:
    """Alert rules of the caller's tenant (``/v1/alerts/rules``) and their deliveries."""

    def __init__(self, client: DagflowClient) -> None:
        self._client = client
        self._base = "/v1/alerts/rules"

    async def create(
        self,
        kind: str,
        url: str,
        *,
        definition: str | None = None,
        secret: str | None = None,
        threshold: float | None = None,
        window: str | None = None,
        min_runs: int | None = None,
        enabled: bool | None = None,
    ) -> AlertRule:
        """Add a rule: ``kind`` is ``run_failed``, ``step_parked`` or ``failure_rate`` (which
        takes ``threshold`` percent, ``window`` and ``min_runs``); ``secret`` names the signing
        secret (default ``alerts``).

        Raises:
            Invalid: A bad field, or a secret the starter cannot resolve for the tenant.
        """
        given = {
            "kind": kind,
            "url": url,
            "definition": definition,
            "secret": secret,
            "threshold": threshold,
            "window": window,
            "min_runs": min_runs,
            "enabled": enabled,
        }
        body = json.dumps({k: v for k, v in given.items() if v is not None})
        return await self._client.request("POST", self._base, AlertRule, text=body)

    async def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[AlertRule]:
        """One page of the tenant's rules, oldest first."""
        params = {"limit": limit, "cursor": cursor}
        return await self._client.request("GET", self._base, Page[AlertRule], params=params)

    async def get(self, rule_id: int) -> AlertRule:
        """One rule."""
        return await self._client.request("GET", f"{self._base}/{int(rule_id)}", AlertRule)

    async def update(self, rule_id: int, **changes: str | bool) -> AlertRule:
        """Change a rule's ``url``, ``secret`` or ``enabled``."""
        path = f"{self._base}/{int(rule_id)}"
        return await self._client.request("PATCH", path, AlertRule, text=json.dumps(changes))

    async def delete(self, rule_id: int) -> AlertRule:
        """Remove a rule and the record of its deliveries."""
        return await self._client.request("DELETE", f"{self._base}/{int(rule_id)}", AlertRule)

    async def deliveries(
        self, *, rule: int | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page[AlertDelivery]:
        """One page of the tenant's alerts, newest first, with how their delivery went."""
        params = {"rule": rule, "limit": limit, "cursor": cursor}
        path = "/v1/alerts/deliveries"
        return await self._client.request("GET", path, Page[AlertDelivery], params=params)


class CommandsApi:
    """``/v1/commands``: commands that start the runs bound to their type (tenant keys)."""

    def __init__(self, client: DagflowClient) -> None:
        self._client = client

    async def send(self, type: str, id: str, payload: Any = None) -> Command:
        """Send a command: its bound runs run one after another, the instance's bindings
        first, each after the one before completed (``Command.workflow_id`` is the command
        run that runs them; None for a single binding, whose run starts at once).

        A repeated ``id`` starts nothing and returns the first answer (``created`` False).

        Raises:
            NotFound: No binding for ``type``.
            Invalid: The payload breaks a bound definition's input schema (every violation
                in ``errors``), or ``id`` was sent before with another type or payload, or
                its run keys are in use by another request (at ``id``).
            Conflict: A binding cannot run (its definition is deactivated or gone).
        """
        body = CommandSend.model_construct(type=type, id=id, payload=payload)
        text = body.model_dump_json(by_alias=True)
        return await self._client.request("POST", "/v1/commands", Command, text=text)

    async def get(self, command_id: str) -> Command:
        """A command in the ledger and its runs, each with its live ``status``."""
        return await self._client.request("GET", f"/v1/commands/{_seg(command_id)}", Command)

    async def list(
        self, *, type: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page[Command]:
        """One page of the tenant's commands, newest first."""
        params = {"type": type, "limit": limit, "cursor": cursor}
        return await self._client.request("GET", "/v1/commands", Page[Command], params=params)

    async def iterate(self, **filters: Any) -> AsyncIterator[Command]:
        """Every command matching the filters of :meth:`list`, page after page."""
        async for item in pages(lambda cursor: self.list(cursor=cursor, **filters)):
            yield item


class RunsApi:
    """``/v1/runs`` and ``/v1/errors``: the tenant's runs. A run is named by its ``id``,
    ``<definition>/<key>`` (as in :class:`~starter.api.runs.RunRef`)."""

    def __init__(self, client: DagflowClient) -> None:
        self._client = client

    async def start(
        self,
        definition: str,
        input: Any = None,
        *,
        version: int | None = None,
        key: str | None = None,
        key_in_body: bool = False,
    ) -> RunRef:
        """Start a run of a definition (current or pinned ``version``).

        Args:
            definition: The tenant's definition, else the instance's.
            input: The run's input (checked against the definition's input schema).
            version: The version to pin.
            key: The idempotency key: the same key with the same request returns the same
                run (``created`` False); sent as the ``Idempotency-Key`` header.
            key_in_body: Send ``key`` as the body's ``idempotency_key`` instead.

        Raises:
            NotFound: No such definition or version.
            Conflict: The definition is deactivated.
            Invalid: The input breaks the schema (every violation in ``errors``), or the key
                was used with another request.
        """
        fields: dict[str, Any] = {"definition": definition, "input": input}
        if version is not None:
            fields["version"] = version
        if key is not None and key_in_body:
            fields["idempotency_key"] = key
        headers = {"Idempotency-Key": key} if key is not None and not key_in_body else None
        return await self._client.request(
            "POST", "/v1/runs", RunRef, text=json.dumps(fields), headers=headers
        )

    async def list(
        self,
        *,
        definition: str | None = None,
        status: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[RunSummary]:
        """One page of the tenant's runs, newest first."""
        params = {
            "definition": definition,
            "status": status,
            "started_after": started_after.isoformat() if started_after else None,
            "started_before": started_before.isoformat() if started_before else None,
            "limit": limit,
            "cursor": cursor,
        }
        return await self._client.request("GET", "/v1/runs", Page[RunSummary], params=params)

    async def iterate(self, **filters: Any) -> AsyncIterator[RunSummary]:
        """Every run matching the filters of :meth:`list`, page after page."""
        async for item in pages(lambda cursor: self.list(cursor=cursor, **filters)):
            yield item

    async def get(self, run: str) -> RunDetail:
        """One run: status, version, input, output or error, and its steps."""
        return await self._client.request("GET", _run_path(run), RunDetail)

    async def trace(self, run: str) -> RunTrace:
        """Every step of a run with attempts, times, durations and last errors."""
        return await self._client.request("GET", f"{_run_path(run)}/trace", RunTrace)

    async def graph(self, run: str, *, format: str = "svg") -> str:
        """A run's DAG coloured by step status: SVG, or Mermaid text with ``format="mermaid"``."""
        params = {"format": format}
        return (
            await self._client.send("GET", f"{_run_path(run)}/graph.svg", params=params)
        ).decode()

    async def errors(self, *, limit: int | None = None) -> StepErrors:
        """The tenant's latest failed or needs_attention steps across runs."""
        return await self._client.request("GET", "/v1/errors", StepErrors, params={"limit": limit})

    async def retry(self, run: str, step: str, with_: Mapping[str, Any] | None = None) -> Action:
        """Run a parked step again, ``with_`` overriding its inputs.

        Raises:
            NotFound: No such run, or no such step.
            Conflict: The step is not parked, or the run is closed.
        """
        body = {"with": dict(with_)} if with_ is not None else {}
        return await self._step(run, step, "retry", body)

    async def complete(self, run: str, step: str, output: Any = None) -> Action:
        """Resolve a parked step as succeeded with ``output``."""
        return await self._step(run, step, "complete", {"output": output})

    async def skip(self, run: str, step: str) -> Action:
        """Resolve a parked step as skipped."""
        return await self._step(run, step, "skip", None)

    async def fail(self, run: str, reason: str | None = None) -> Action:
        """Fail an open run now."""
        body = {"reason": reason} if reason is not None else {}
        return await self._post(f"{_run_path(run)}/fail", body, Action)

    async def send(self, run: str, name: str, payload: Any = None) -> Action:
        """Deliver the event ``name`` to the run's wait steps."""
        return await self._post(
            f"{_run_path(run)}/events", {"name": name, "payload": payload}, Action
        )

    async def cancel(self, run: str) -> Action:
        """Ask an open run to cancel."""
        return await self._post(f"{_run_path(run)}/cancel", None, Action)

    async def rerun(self, run: str, *, key: str | None = None) -> RunRef:
        """Rerun a closed failed run: a new run that reuses the steps that succeeded.

        Raises:
            Conflict: The run is open or completed.
        """
        body = {"key": key} if key is not None else {}
        return await self._post(f"{_run_path(run)}/rerun", body, RunRef)

    async def _step(self, run: str, step: str, action: str, body: Any) -> Action:
        return await self._post(f"{_run_path(run)}/steps/{_seg(step)}/{action}", body, Action)

    async def _post(self, path: str, body: Any, model: type[M]) -> M:
        text = json.dumps(body) if body is not None else None
        return await self._client.request("POST", path, model, text=text)


def _run_path(run: str) -> str:
    definition, _, key = run.partition("/")
    return f"/v1/runs/{_seg(definition)}/{_seg(key)}"


async def pages(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> AsyncIterator[T]:
    """Every item of a paginated list: ``fetch(cursor)`` returns one page."""
    cursor: str | None = None
    while True:
        page = await fetch(cursor)
        for item in page.items:
            yield item
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _keys_path(tenant: str | None) -> str:
    return "/v1/instance/keys" if tenant is None else f"/v1/instance/tenants/{_seg(tenant)}/keys"


def _seg(value: str) -> str:
    return quote(value, safe="")


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _error(answer: aiohttp.ClientResponse, body: bytes) -> ApiError:
    retry_after = _seconds(answer.headers.get("Retry-After"))
    problem: ProblemDetails | None = None
    if answer.content_type in (PROBLEM_JSON, "application/json"):
        try:
            problem = ProblemDetails.model_validate_json(body)
        except ValidationError:
            problem = None
        if problem is not None and problem.status != answer.status:
            problem = None
    if problem is None:
        detail = body.decode(errors="replace")[:500] or None
        problem = ProblemDetails(
            title=answer.reason or "Error", status=answer.status, detail=detail
        )
    return ApiError.from_problem(problem, retry_after)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
