"""The starter's codec server (POST /codec/decode and /codec/encode) over real HTTP: round trips,
CORS for configured origins only, keys required, tenants see their own payloads only."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from starter.devserver import temporal_binary
from tests.engine import dag_worker, start_dag
from tests.starter import Databases, Starter, running, service_settings
from tests.steps import Probe
from worker.client import connect
from worker.codec import Keyring, encrypt

K1 = base64.b64encode(b"1" * 32).decode()
UI = "http://localhost:8233"
PLAIN = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
         "data": base64.b64encode(b'{"card": "4242"}').decode()}  # fmt: skip


@pytest.fixture
async def codec_starter(databases: Databases, temporal_address: str) -> AsyncIterator[Starter]:
    settings = service_settings(
        await databases.fresh(),
        temporal_address,
        encryption_keys=f"k1:{K1}",
        codec_cors_origins=f"{UI}, https://ui.example",
        task_queue=f"tq-{uuid.uuid4()}",
    )
    async with running(settings) as service:
        yield service


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def tenant_key(starter: Starter, tenant: str) -> str:
    admin = starter.instance()
    await admin.instance.create_tenant(tenant)
    return (await admin.instance.create_key("codec", tenant=tenant)).key


async def call(
    http: aiohttp.ClientSession,
    starter: Starter,
    op: str,
    payloads: list[dict[str, Any]],
    key: str | None,
    **headers: str,
) -> tuple[int, Any, Any]:
    if key:
        headers["Authorization"] = f"Bearer {key}"
    async with http.post(
        f"{starter.base_url}/codec/{op}",
        json={"payloads": payloads},
        headers={"X-Namespace": "default", **headers},
    ) as answer:
        return answer.status, await answer.json(content_type=None), answer.headers


def metadata(payload: dict[str, Any], name: str) -> str:
    return base64.b64decode(payload["metadata"][name]).decode()


async def test_encode_decode_round_trip(
    codec_starter: Starter, http: aiohttp.ClientSession
) -> None:
    key = await tenant_key(codec_starter, f"acme-{uuid.uuid4().hex[:6]}")
    status, body, _ = await call(http, codec_starter, "encode", [PLAIN], key)
    assert status == 200, body
    [sealed] = body["payloads"]
    assert metadata(sealed, "encoding") == "binary/encrypted"
    assert metadata(sealed, "encryption-key-id") == "k1"
    assert "4242" not in base64.b64decode(sealed["data"]).decode(errors="replace")
    status, body, _ = await call(http, codec_starter, "decode", [sealed, PLAIN], key)
    assert status == 200, body
    assert body["payloads"] == [PLAIN, PLAIN], "plain payloads pass through"


async def test_tenants_decode_their_own_payloads_and_operators_any(
    codec_starter: Starter, http: aiohttp.ClientSession
) -> None:
    acme, globex = f"acme-{uuid.uuid4().hex[:6]}", f"globex-{uuid.uuid4().hex[:6]}"
    acme_key, globex_key = (
        await tenant_key(codec_starter, acme),
        await tenant_key(codec_starter, globex),
    )
    # a payload as a worker writes it in one of acme's runs
    sealed = json_format.MessageToDict(
        encrypt(Keyring.parse(f"k1:{K1}"), json_format.ParseDict(PLAIN, Payload()), acme)
    )
    _, body, _ = await call(http, codec_starter, "decode", [sealed], globex_key)
    assert body["payloads"] == [sealed], "another tenant's payload stays encrypted"
    _, body, _ = await call(http, codec_starter, "decode", [sealed], acme_key)
    assert body["payloads"] == [PLAIN]
    status, body, _ = await call(http, codec_starter, "decode", [sealed], "test-instance-key")
    assert status == 200 and body["payloads"] == [PLAIN], "an instance key decodes any"
    forged = {**sealed, "metadata": {**sealed["metadata"],
              "encryption-tenant": base64.b64encode(globex.encode()).decode()}}  # fmt: skip
    _, body, _ = await call(http, codec_starter, "decode", [forged], globex_key)
    assert body["payloads"] == [forged], "relabelling the tenant does not decrypt"


async def test_a_key_is_required(codec_starter: Starter, http: aiohttp.ClientSession) -> None:
    for op in ("decode", "encode"):
        status, body, _ = await call(http, codec_starter, op, [PLAIN], None)
        assert status == 401, body
        status, _, _ = await call(http, codec_starter, op, [PLAIN], "dfk_nope")
        assert status == 401


async def test_cors_for_configured_origins_only(
    codec_starter: Starter, http: aiohttp.ClientSession
) -> None:
    url = f"{codec_starter.base_url}/codec/decode"
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    async with http.options(url, headers={"Origin": UI, **preflight}) as answer:
        assert answer.status == 204
        assert answer.headers["Access-Control-Allow-Origin"] == UI
        assert answer.headers["Access-Control-Allow-Credentials"] == "true"
        allowed = answer.headers["Access-Control-Allow-Headers"].lower()
        assert {"authorization", "content-type", "x-namespace"} <= {
            h.strip() for h in allowed.split(",")
        }
        assert "POST" in answer.headers["Access-Control-Allow-Methods"]
    async with http.options(url, headers={"Origin": "https://evil.example", **preflight}) as a:
        assert a.status == 403
        assert "Access-Control-Allow-Origin" not in a.headers
    status, _, headers = await call(
        http, codec_starter, "decode", [PLAIN], "test-instance-key", Origin=UI
    )
    assert status == 200 and headers["Access-Control-Allow-Origin"] == UI
    status, _, headers = await call(http, codec_starter, "decode", [PLAIN], None, Origin=UI)
    assert status == 401 and headers["Access-Control-Allow-Origin"] == UI, "the UI reads errors"
    status, _, headers = await call(
        http, codec_starter, "decode", [PLAIN], "test-instance-key", Origin="https://evil.example"
    )
    assert status == 403 and "Access-Control-Allow-Origin" not in headers


async def test_bad_payloads_and_encryption_off(
    codec_starter: Starter, http: aiohttp.ClientSession, databases: Databases, temporal_address: str
) -> None:
    bad = {"metadata": {"encoding": "not base64!"}, "data": ""}
    status, body, _ = await call(http, codec_starter, "decode", [bad], "test-instance-key")
    assert status == 400, body
    settings = service_settings(await databases.fresh(), temporal_address)
    async with running(settings) as plain:
        status, body, _ = await call(http, plain, "decode", [PLAIN], "test-instance-key")
        assert status == 404 and "DAGFLOW_ENCRYPTION_KEYS" in body["detail"]


async def temporal_show(address: str, workflow_id: str, *codec: str) -> str:
    process = await asyncio.create_subprocess_exec(
        temporal_binary(), "workflow", "show", "--address", address, "--workflow-id",
        workflow_id, "--output", "json", *codec,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, out.decode()
    return out.decode() + "\n".join(_payload_data(json.loads(out)))


def _payload_data(node: Any) -> list[str]:
    """Every payload's data in the CLI's JSON, base64-decoded (where the plain text would be)."""
    if isinstance(node, list):
        return [text for item in node for text in _payload_data(item)]
    if not isinstance(node, dict):
        return []
    found = (
        [base64.b64decode(node["data"]).decode(errors="replace")]
        if "metadata" in node and isinstance(node.get("data"), str)
        else []
    )
    return found + [text for value in node.values() for text in _payload_data(value)]


async def test_the_temporal_cli_decodes_a_real_run_through_the_codec_server(
    codec_starter: Starter, client: Client, temporal_address: str
) -> None:
    acme, globex = f"acme-{uuid.uuid4().hex[:6]}", f"globex-{uuid.uuid4().hex[:6]}"
    acme_key, globex_key = (
        await tenant_key(codec_starter, acme),
        await tenant_key(codec_starter, globex),
    )
    secret = await connect(temporal_address, client.namespace, keyring=Keyring.parse(f"k1:{K1}"))
    canary = f"canary-{uuid.uuid4().hex}"
    async with dag_worker(secret, Probe().activities()) as w:
        handle = await start_dag(
            secret,
            w,
            {
                "name": "shown",
                "steps": {"echo": {"uses": "noop", "with": {"value": canary}}},
                "output": "${{ steps.echo.output }}",
            },
            tenant=acme,
        )
        assert await handle.result() == canary
    endpoint = f"{codec_starter.base_url}/codec"
    assert canary not in await temporal_show(temporal_address, handle.id)
    shown = await temporal_show(
        temporal_address, handle.id, "--codec-endpoint", endpoint,
        "--codec-auth", f"Bearer {acme_key}",
    )  # fmt: skip
    assert canary in shown
    hidden = await temporal_show(
        temporal_address, handle.id, "--codec-endpoint", endpoint,
        "--codec-auth", f"Bearer {globex_key}",
    )  # fmt: skip
    assert canary not in hidden
    assert base64.b64encode(b"binary/encrypted").decode() in hidden, "left encrypted"


async def test_runs_started_through_the_starter_are_encrypted_for_their_tenant_and_read_back(
    codec_starter: Starter, client: Client, temporal_address: str
) -> None:
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    tenant = await codec_starter.tenant(tenant_id)
    canary = f"canary-{uuid.uuid4().hex}"
    await tenant.definitions.create(
        {
            "name": "through-starter",
            "steps": {"echo": {"uses": "transform", "with": {"value": "${{ input.card }}"}}},
            "output": "${{ steps.echo.output }}",
        }
    )
    secret = await connect(temporal_address, client.namespace, keyring=Keyring.parse(f"k1:{K1}"))
    queue = codec_starter.settings.task_queue
    async with dag_worker(secret, Probe().activities(), task_queue=queue):
        ref = await tenant.runs.start("through-starter", {"card": canary})
        assert await secret.get_workflow_handle(ref.workflow_id).result() == canary
        run = await tenant.runs.get(ref.id)
        assert (run.input, run.output) == ({"card": canary}, canary), "the starter decodes"
    history = await client.get_workflow_handle(ref.workflow_id).fetch_history()
    raw = b"".join(event.SerializeToString() for event in history.events)
    assert canary.encode() not in raw
    started = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    assert started.metadata["encryption-tenant"] == tenant_id.encode()


# --- codec sessions: the cookie a browser's Web UI sends instead of a key ----------------------


async def sign_in(
    starter: Starter, key: str, *, form: bool = True, **headers: str
) -> tuple[int, str, aiohttp.ClientResponse]:
    """POST /codec/session without following the redirect; the answer's cookie header."""
    async with aiohttp.ClientSession() as http:
        kwargs: dict[str, Any] = {"data": {"key": key}} if form else {}
        if not form:
            headers["Authorization"] = f"Bearer {key}"
        async with http.post(
            f"{starter.base_url}/codec/session", allow_redirects=False, headers=headers, **kwargs
        ) as answer:
            await answer.read()
            return answer.status, answer.headers.get("Set-Cookie", ""), answer


def cookie_value(set_cookie: str) -> str:
    name, _, rest = set_cookie.partition("=")
    assert name == "dagflow_codec_session", set_cookie
    return rest.split(";")[0]


async def decode_with_cookie(starter: Starter, cookie: str, payload: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(
        f"{starter.base_url}/codec/decode",
        json={"payloads": [payload]},
        headers={"X-Namespace": "default", "Cookie": f"dagflow_codec_session={cookie}",
                 "Origin": UI},
    ) as answer:  # fmt: skip
        return answer.status, await answer.json(content_type=None)


async def test_a_codec_session_decodes_like_its_key_until_the_key_is_revoked(
    codec_starter: Starter,
) -> None:
    acme = f"acme-{uuid.uuid4().hex[:6]}"
    admin = codec_starter.instance()
    await admin.instance.create_tenant(acme)
    key = await admin.instance.create_key("browser", tenant=acme)
    sealed = json_format.MessageToDict(
        encrypt(Keyring.parse(f"k1:{K1}"), json_format.ParseDict(PLAIN, Payload()), acme)
    )
    status, set_cookie, answer = await sign_in(codec_starter, key.key)
    assert status == 303 and answer.headers["Location"] == "/codec/session"
    attributes = {part.strip().split("=")[0].lower() for part in set_cookie.split(";")}
    assert {"httponly", "path", "max-age", "samesite"} <= attributes, set_cookie
    assert "Path=/codec" in set_cookie and "SameSite=Lax" in set_cookie
    cookie = cookie_value(set_cookie)
    assert key.key not in cookie and key.key.split("_")[2] not in cookie, "no key in the cookie"
    status, body = await decode_with_cookie(codec_starter, cookie, sealed)
    assert status == 200 and body["payloads"] == [PLAIN], body

    forged = cookie[:-1] + ("0" if cookie[-1] != "0" else "1")
    status, body = await decode_with_cookie(codec_starter, forged, sealed)
    assert status == 401, body
    later = cookie.split(".")
    later[1] = str(int(later[1]) + 3600)  # stretching the expiry breaks the signature
    status, _ = await decode_with_cookie(codec_starter, ".".join(later), sealed)
    assert status == 401

    await admin.instance.revoke_key(key.id, tenant=acme)
    status, body = await decode_with_cookie(codec_starter, cookie, sealed)
    assert status == 401 and "revoked" in body["detail"], body


async def test_the_session_page_signs_in_and_out(codec_starter: Starter) -> None:
    jar = aiohttp.CookieJar(unsafe=True)  # keep cookies of 127.0.0.1, as browsers do
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(f"{codec_starter.base_url}/codec/session") as page:
            assert page.status == 200 and page.content_type == "text/html"
            assert "name=key type=password" in await page.text()
        # a wrong key gets the form again, with the reason, and no cookie
        async with http.post(
            f"{codec_starter.base_url}/codec/session", data={"key": "dfk_nope"}
        ) as page:
            assert page.status == 401 and page.content_type == "text/html"
            assert "unknown API key" in await page.text()
            assert "Set-Cookie" not in page.headers
        # the instance key: the page says so after the redirect, and signing out ends it
        async with http.post(
            f"{codec_starter.base_url}/codec/session",
            data={"key": "test-instance-key"},
            headers={"Origin": codec_starter.base_url},  # the page's own form
        ) as page:
            assert page.status == 200, await page.text()
            text = await page.text()
            assert "id=signed-in" in text and "every tenant" in text
            assert f"{codec_starter.base_url}/codec" in text
        async with http.post(f"{codec_starter.base_url}/codec/session/sign-out") as page:
            assert page.status == 200 and "id=signed-in" not in await page.text()
        assert not [c for c in http.cookie_jar if c.key == "dagflow_codec_session"]


async def test_sessions_over_https_are_secure_and_cross_site(codec_starter: Starter) -> None:
    status, set_cookie, _ = await sign_in(
        codec_starter, "test-instance-key", form=False, **{"X-Forwarded-Proto": "https"}
    )
    assert status == 303
    assert "Secure" in set_cookie and "SameSite=None" in set_cookie, set_cookie


async def test_bad_sign_ins_are_4xx(codec_starter: Starter, http: aiohttp.ClientSession) -> None:
    url = f"{codec_starter.base_url}/codec/session"
    async with http.post(url, data={"key": "  "}) as answer:
        body = await answer.json(content_type=None)
        assert answer.status == 400 and body["errors"][0]["path"] == "key", body
    async with http.post(url, json={"key": "x"}) as answer:
        assert answer.status == 415
    async with http.post(url) as answer:
        assert answer.status == 401, "no form and no bearer key"
    async with http.post(url, data={"key": "x"}, headers={"Origin": "https://evil.example"}) as a:
        assert a.status == 403, "another site's form may not sign this browser in"


async def test_no_sessions_without_encryption(databases: Databases, temporal_address: str) -> None:
    settings = service_settings(await databases.fresh(), temporal_address)
    async with running(settings) as plain:
        status, set_cookie, _ = await sign_in(plain, "test-instance-key", form=False)
        assert status == 404 and not set_cookie
