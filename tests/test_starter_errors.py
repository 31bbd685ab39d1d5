"""Bad input, limits and failures answer problem+json with the right status, never a raw 5xx."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from starter.client import DagflowClient
from starter.errors import RateLimited, ServerError
from starter.routes import ROUTES
from starter.routes.table import Call, Route
from tests.starter import INSTANCE_KEY, Databases, Starter, running, service_settings
from tests.test_payload_store import stored_files

DEFINITION = {"name": "ok", "steps": {"a": {"uses": "transform", "with": {"value": 1}}}}


def malformed_requests(tenant_key: str) -> list[tuple[str, str, dict[str, str], bytes]]:
    """(method, path, headers, body) of requests that are wrong in one way each."""
    tenant = {"Authorization": f"Bearer {tenant_key}"}
    admin = {"Authorization": f"Bearer {INSTANCE_KEY}"}
    as_json = {"Content-Type": "application/json"}
    cases: list[tuple[str, str, dict[str, str], bytes]] = []

    def add(
        method: str, path: str, who: dict[str, str], body: Any = None, raw: bytes = b""
    ) -> None:
        data = json.dumps(body).encode() if body is not None else raw
        headers = {**who, **(as_json if body is not None else {})}
        cases.append((method, path, headers, data))

    # bodies that are not JSON, not objects, of the wrong types, with unknown fields
    for path, who in (
        ("/v1/instance/tenants", admin),
        ("/v1/instance/keys", admin),
        ("/v1/definitions/ok/rollback", tenant),
        ("/v1/templates/ok/instantiate", tenant),
    ):
        for raw in (b"{", b"{]", b"nul", b"\xff\xfe", b'{"a": 1,}', b"[" * 5000):
            cases.append(("POST", path, {**who, **as_json}, raw))
        for body in ([], "text", 42, None, {"unknown": 1}):
            add("POST", path, who, body if body is not None else {"nothing": None})
    add("POST", "/v1/instance/tenants", admin, {"id": 5})
    add("POST", "/v1/instance/tenants", admin, {"id": "UPPER"})
    add("POST", "/v1/instance/tenants", admin, {"id": "x" * 100})
    add("POST", "/v1/instance/tenants", admin, {"id": "ok", "name": ""})
    add("POST", "/v1/instance/tenants/acme/keys", admin, {"name": ["list"]})
    add("POST", "/v1/definitions/ok/rollback", tenant, {"version": 0})
    add("POST", "/v1/definitions/ok/rollback", tenant, {"version": "one"})
    add("POST", "/v1/definitions/ok/rollback", tenant, {"version": 10**30})
    add("POST", "/v1/templates/ok/instantiate", tenant, {"name": "x", "params": []})
    add("POST", "/v1/templates/ok/instantiate", tenant, {"name": "UP", "params": {}})
    # definitions that are not definitions
    for raw in (b"{", b"[]", b"42", b'"text"', b"null", b"name: [", b"\xff", b"{}"):
        cases.append(("POST", "/v1/definitions", {**tenant, **as_json}, raw))
    cases.append(("POST", "/v1/definitions", {**tenant, "Content-Type": "image/png"}, b"x"))
    cases.append(("PUT", "/v1/definitions/ok", {**tenant, **as_json}, b'{"name": 1}'))
    cases.append(("POST", "/v1/definitions", {**tenant, **as_json}, b"[" * 100000))
    # bad path parameters and query parameters
    for path in (
        "/v1/definitions/BAD%20NAME",
        "/v1/definitions/ok/versions/0",
        "/v1/definitions/ok/versions/abc",
        "/v1/definitions/ok/versions/99999999999999999999",
        "/v1/definitions?limit=abc",
        "/v1/definitions?limit=0",
        "/v1/definitions?limit=100000",
        "/v1/definitions?cursor=garbage",
        "/v1/definitions?cursor=WyJ4Il0",
        "/v1/definitions?active=maybe",
        "/v1/definitions?scope=everyone",
        "/v1/definitions?unknown=1",
        "/v1/definitions/ok/versions?cursor=%00",
    ):
        add("GET", path, tenant)
    for path in ("/v1/instance/tenants/UP", "/v1/instance/tenants?limit=-1"):
        add("GET", path, admin)
    add("DELETE", "/v1/instance/keys/not-a-key", admin)
    add("DELETE", "/v1/instance/tenants/acme/keys/zz", admin)
    # bindings and commands
    for path, who in (("/v1/bindings", tenant), ("/v1/instance/bindings", admin)):
        add("POST", path, who, {"type": "Order.Created", "definition": "ok"})
        add("POST", path, who, {"type": "order.created", "definition": "BAD NAME"})
        add("POST", path, who, {"type": "order.created", "definition": "ok", "version": 0})
        add("POST", path, who, {"type": "order.created", "definition": "ok", "position": -1})
        add("POST", path, who, {"type": "order.created", "definition": "ok", "extra": 1})
        add("POST", path, who, {"type": "x" * 100, "definition": "ok"})
        cases.append(("POST", path, {**who, **as_json}, b"{"))
        add("GET", f"{path}/0", who)
        add("GET", f"{path}/abc", who)
        add("GET", f"{path}/99999999999999999999", who)
        add("DELETE", f"{path}/-1", who)
        add("GET", f"{path}?type=Bad%20Type", who)
        add("GET", f"{path}?cursor=WyJ4Il0", who)
    add("GET", "/v1/bindings/424242", tenant)
    add("PUT", "/v1/bindings/1", tenant, {"type": "order.created", "definition": "ok"})
    add("POST", "/v1/commands", tenant, {"type": "order.created"})
    add("POST", "/v1/commands", tenant, {"type": "order.created", "id": "has.dot"})
    add("POST", "/v1/commands", tenant, {"type": "order.created", "id": "x" * 200})
    add("POST", "/v1/commands", tenant, {"type": "order.created", "id": "a/b"})
    add("POST", "/v1/commands", tenant, {"type": 5, "id": "c1"})
    add("POST", "/v1/commands", tenant, {"type": "unbound.type", "id": "c1", "payload": {}})
    add("POST", "/v1/commands", tenant, {"type": "order.created", "id": "c1", "extra": 1})
    add("POST", "/v1/commands", admin, {"type": "order.created", "id": "c1"})
    cases.append(("POST", "/v1/commands", {**tenant, **as_json}, b"[1, 2"))
    cases.append(("POST", "/v1/commands", {**tenant, "Content-Type": "text/plain"}, b"{}"))
    for path in (
        "/v1/commands/nothing",
        "/v1/commands/has.dot",
        "/v1/commands?limit=0",
        "/v1/commands?cursor=garbage",
        "/v1/commands?type=UPPER",
    ):
        add("GET", path, tenant)
    # runs: bodies, keys, ids and filters
    for raw in (b"{", b"[]", b"42", b'{"definition": 5}', b'{"definition": "ok", "version": 0}'):
        cases.append(("POST", "/v1/runs", {**tenant, **as_json}, raw))
    add("POST", "/v1/runs", tenant, {"definition": "ok", "idempotency_key": "bad key"})
    add("POST", "/v1/runs", tenant, {"definition": "ok", "idempotency_key": "x" * 200})
    add("POST", "/v1/runs", tenant, {"definition": "ok", "unknown": 1})
    add("POST", "/v1/runs", tenant, {"definition": "ok", "version": 10**12})
    add("POST", "/v1/runs", tenant, {"definition": "missing"})
    add("POST", "/v1/runs", admin, {"definition": "ok"})
    for header, start in (("bad key", {}), ("a", {"idempotency_key": "b"})):
        body = json.dumps({"definition": "ok", **start}).encode()
        cases.append(("POST", "/v1/runs", {**tenant, **as_json, "Idempotency-Key": header}, body))
    for path in (
        "/v1/runs?status=lost",
        "/v1/runs?limit=0",
        "/v1/runs?started_after=yesterday",
        "/v1/runs?cursor=garbage",
        "/v1/runs?cursor=WyJ4IiwieiJd",
        "/v1/runs?definition=UP",
        "/v1/errors?limit=1000",
        "/v1/runs/ok/bad%20key",
        "/v1/runs/UP/k",
        "/v1/runs/ok/nokey",
        "/v1/runs/ok/nokey/trace",
    ):
        add("GET", path, tenant)
    for suffix, run_body in (
        ("steps/a/retry", {"with": []}),
        ("steps/a/retry", None),
        ("steps/a/complete", {"nope": 1}),
        ("steps/A/skip", None),
        ("fail", {"reason": 5}),
        ("events", {}),
        ("events", {"name": ""}),
        ("rerun", {"key": "bad key"}),
        ("rerun", None),
        ("cancel", None),
    ):
        add("POST", f"/v1/runs/ok/nokey/{suffix}", tenant, run_body)
    # wrong methods, unknown routes, wrong keys
    add("PATCH", "/v1/definitions", tenant)
    add("DELETE", "/v1/definitions/ok", tenant)
    add("GET", "/v1/nothing-here", tenant)
    add("GET", "/v1/instance/tenants", tenant)
    add("GET", "/v1/definitions", admin)
    add("GET", "/v1/definitions", {"Authorization": "Bearer dfk_"})
    return cases


async def test_malformed_requests_answer_4xx_problems_never_5xx(starter: Starter) -> None:
    tenant = await starter.tenant("acme")
    await tenant.definitions.create(DEFINITION)
    assert tenant.api_key is not None
    cases = malformed_requests(tenant.api_key)
    assert len({(m, p, json.dumps(h), b) for m, p, h, b in cases}) >= 50
    statuses = []
    async with aiohttp.ClientSession() as http:
        for method, path, headers, body in cases:
            async with http.request(
                method, starter.base_url + path, headers=headers, data=body
            ) as answer:
                statuses.append(answer.status)
                assert 400 <= answer.status < 500, (method, path, body[:40], await answer.text())
                assert answer.content_type == "application/problem+json"
                problem = await answer.json()
                assert problem["status"] == answer.status and problem["title"]
                assert problem["type"].startswith("urn:dagflow:problem:")
    assert {400, 401, 403, 404, 405, 415, 422} <= set(statuses)


async def test_field_problems_name_the_field(starter: Starter) -> None:
    admin = starter.instance()
    answer = await _raw(admin, "POST", "/v1/instance/tenants", {"id": 5, "extra": True})
    assert answer["status"] == 422
    assert {(e["path"], e["message"]) for e in answer["errors"]} == {
        ("id", "input should be a valid string"),
        ("extra", "unknown field"),
    }
    answer = await _raw(admin, "GET", "/v1/instance/tenants?limit=zero")
    assert answer["status"] == 400 and answer["errors"][0]["path"] == "query.limit"


async def test_bodies_over_the_limit_answer_413(
    databases: Databases, temporal_address: str
) -> None:
    settings = service_settings(await databases.fresh(), temporal_address, max_body_bytes=2048)
    async with running(settings) as starter:
        tenant = await starter.tenant()
        big = {**DEFINITION, "description": "x" * 4096}
        answer = await _raw(tenant, "POST", "/v1/definitions", big)
        assert answer["status"] == 413 and "2048" in answer["detail"]
        assert (await tenant.definitions.create(DEFINITION)).created


async def test_a_run_input_over_temporals_payload_limit(
    databases: Databases, temporal_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = {"items": [f"item-{i:07d}-{'x' * 16}" for i in range(100_000)]}  # about 3.2 MB
    settings = service_settings(
        await databases.fresh(), temporal_address, max_body_bytes=8 * 1024 * 1024
    )
    async with running(settings) as starter:
        tenant = await starter.tenant()
        await tenant.definitions.create(DEFINITION)
        answer = await _raw(tenant, "POST", "/v1/runs", {"definition": "ok", "input": big})
        assert answer["status"] == 413
        assert "2 MB" in answer["detail"] and "DAGFLOW_PAYLOAD_STORE" in answer["detail"]
    monkeypatch.setenv("DAGFLOW_PAYLOAD_STORE", str(tmp_path))
    async with running(settings) as starter:  # connects again: now with the store
        tenant = await starter.tenant()
        await tenant.definitions.create(DEFINITION)
        ref = await tenant.runs.start("ok", big)
        assert ref.created
    assert stored_files(tmp_path), "the input went to the store"


async def test_each_tenant_has_its_own_rate_limit(
    databases: Databases, temporal_address: str
) -> None:
    settings = service_settings(
        await databases.fresh(), temporal_address, rate_limit=0.5, rate_burst=5
    )
    async with running(settings) as starter:
        a = await starter.tenant()
        b = await starter.tenant()
        for _ in range(5):
            await a.definitions.list()
        with pytest.raises(RateLimited) as limited:
            await a.definitions.list()
        assert limited.value.retry_after is not None and limited.value.retry_after >= 1
        assert limited.value.problem.status == 429
        await b.definitions.list()  # another tenant is not limited


async def test_unexpected_errors_answer_500_without_internals(
    databases: Databases, temporal_address: str
) -> None:
    async def explode(call: Call[None]) -> Any:
        """Fail on purpose."""
        raise RuntimeError("secret internals")

    routes = [*ROUTES, Route("GET", "/v1/explode", explode, dict, access="tenant")]
    settings = service_settings(await databases.fresh(), temporal_address)
    async with running(settings, routes=routes) as starter:
        tenant = await starter.tenant()
        with pytest.raises(ServerError) as error:
            await tenant.send("GET", "/v1/explode")
        assert error.value.problem.status == 500
        assert "secret" not in (error.value.problem.detail or "")
        assert "incident" in (error.value.problem.detail or "")


async def test_readiness_follows_temporal(databases: Databases, temporal_address: str) -> None:
    url = await databases.fresh()
    async with running(service_settings(url, temporal_address)) as up:
        ready = await up.client(None).ready()
        assert (ready.status, ready.database, ready.temporal) == ("ok", "ok", "ok")
    down = service_settings(url, "127.0.0.1:9", temporal_timeout=0.5)
    async with running(down) as starter, aiohttp.ClientSession() as http:
        async with http.get(f"{starter.base_url}/healthz") as answer:
            assert answer.status == 200
        async with http.get(f"{starter.base_url}/readyz") as answer:
            assert answer.status == 503 and int(answer.headers["Retry-After"]) > 0
            assert await answer.json() == {
                "status": "unavailable",
                "database": "ok",
                "temporal": "unavailable",
            }
        tenant = await starter.tenant()  # the database side works without Temporal
        assert (await tenant.definitions.create(DEFINITION)).created


async def _raw(client: DagflowClient, method: str, path: str, body: Any = None) -> Any:
    try:
        await client.send(method, path, text=None if body is None else json.dumps(body))
    except Exception as error:
        return error.problem.model_dump(exclude_none=True)  # type: ignore[attr-defined]
    raise AssertionError("expected an error")
