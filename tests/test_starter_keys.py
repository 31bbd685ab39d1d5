"""Tenants and API keys: created by the instance, shown once, stored hashed, revocable."""

from __future__ import annotations

import aiohttp
import pytest

from starter.client import DagflowClient, pages
from starter.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from tests.starter import Starter


async def test_tenant_lifecycle(starter: Starter) -> None:
    admin = starter.instance().instance
    created = await admin.create_tenant("acme", "Acme Corp")
    assert (created.id, created.name) == ("acme", "Acme Corp")
    assert (await admin.get_tenant("acme")).name == "Acme Corp"
    with pytest.raises(Conflict):
        await admin.create_tenant("acme")
    with pytest.raises(NotFound):
        await admin.get_tenant("nobody")
    with pytest.raises(Invalid) as bad:
        await admin.create_tenant("Not_A_Slug")
    assert [e.path for e in bad.value.errors] == ["id"]

    for tenant_id in ("b-1", "b-2", "b-3"):
        await admin.create_tenant(tenant_id)
    first = await admin.list_tenants(limit=3)
    second = await admin.list_tenants(limit=3, cursor=first.next_cursor)
    assert [t.id for t in first.items] == ["acme", "b-1", "b-2"]
    assert [t.id for t in second.items] == ["b-3"] and second.next_cursor is None
    listed = [t.id async for t in pages(lambda cursor: admin.list_tenants(limit=1, cursor=cursor))]
    assert listed == ["acme", "b-1", "b-2", "b-3"]


async def test_a_key_is_shown_once_and_stored_as_a_hash(starter: Starter) -> None:
    admin = starter.instance().instance
    await admin.create_tenant("acme")
    new = await admin.create_key("deploy bot", tenant="acme")
    assert new.key.startswith(f"dfk_{new.prefix}_") and len(new.key) == 4 + 8 + 1 + 32
    assert new.tenant == "acme" and new.revoked_at is None

    listed = (await admin.list_keys(tenant="acme")).items
    assert [k.id for k in listed] == [new.id]
    assert "key" not in listed[0].model_dump()

    rows = await starter.sql("SELECT * FROM api_keys")
    stored = " ".join(str(value) for row in rows for value in row)
    secret = new.key.rsplit("_", 1)[1]
    assert secret not in stored and new.key not in stored
    assert new.prefix in stored

    tenant = starter.client(new.key)
    assert (await tenant.definitions.list()).items == []


async def test_a_revoked_key_answers_401(starter: Starter) -> None:
    admin = starter.instance().instance
    await admin.create_tenant("acme")
    new = await admin.create_key("ci", tenant="acme")
    tenant = starter.client(new.key)
    await tenant.definitions.list()

    revoked = await admin.revoke_key(new.id, tenant="acme")
    assert revoked.revoked_at is not None
    with pytest.raises(Unauthorized) as error:
        await tenant.definitions.list()
    assert error.value.problem.detail == "this API key was revoked"
    with pytest.raises(NotFound):
        await admin.revoke_key(new.id, tenant="other")


async def test_missing_and_bad_keys_answer_401_with_www_authenticate(starter: Starter) -> None:
    async with aiohttp.ClientSession() as http:
        for headers in (
            {},
            {"Authorization": "Basic dXNlcjpwdw=="},
            {"Authorization": "Bearer "},
            {"Authorization": "Bearer dfk_aaaaaaaa_" + "b" * 32},
            {"Authorization": "Bearer something-else"},
        ):
            async with http.get(f"{starter.base_url}/v1/definitions", headers=headers) as answer:
                assert answer.status == 401, headers
                assert answer.content_type == "application/problem+json"
                assert answer.headers["WWW-Authenticate"].startswith("Bearer")
                body = await answer.json()
                assert body["status"] == 401 and body["title"] == "Unauthorized"


async def test_keys_only_open_their_own_routes(starter: Starter) -> None:
    tenant = await starter.tenant("acme")
    with pytest.raises(Forbidden):
        await tenant.instance.list_tenants()
    with pytest.raises(Forbidden):
        await tenant.instance.definitions.list()
    with pytest.raises(Forbidden):
        await starter.instance().definitions.list()


async def test_instance_keys_can_be_issued_and_revoked(starter: Starter) -> None:
    admin = starter.instance().instance
    new = await admin.create_key("second admin")
    assert new.tenant is None
    second = starter.client(new.key)
    await second.instance.create_tenant("made-by-second")
    assert [k.id for k in (await admin.list_keys()).items] == [new.id]
    await admin.revoke_key(new.id)
    with pytest.raises(Unauthorized):
        await second.instance.list_tenants()


async def test_bad_path_ids_answer_400_naming_the_parameter(starter: Starter) -> None:
    admin: DagflowClient = starter.instance()
    for path in ("/v1/instance/tenants/UPPER", "/v1/instance/keys/not-hex"):
        method = "DELETE" if "keys" in path else "GET"
        with pytest.raises(Exception) as error:
            await admin.send(method, path)
        problem = error.value.problem  # type: ignore[attr-defined]
        assert problem.status == 400
        assert problem.errors[0].path.startswith("path.")
