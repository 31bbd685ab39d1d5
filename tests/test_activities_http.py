"""The ``http`` and ``webhook`` activities against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.client import HttpClient
from activities.http import HttpSteps
from activities.netguard import AddressGuard
from activities.secrets import SecretStore
from activities.webhook import WebhookSteps, verify_signature
from workflows.types import StepInput

API_TOKEN = "tok-7f3a9c-secret"
WEBHOOK_SECRET = "whsec-51d0e2"
SECRETS = SecretStore(
    environ={"DAGFLOW_SECRET_API_TOKEN": API_TOKEN, "DAGFLOW_SECRET_WEBHOOK": WEBHOOK_SECRET}
)
LOOPBACK = AddressGuard(["127.0.0.0/8"])

# --- the server the steps talk to ---------------------------------------------------------------


async def _echo(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "method": request.method,
            "query": [[k, v] for k, v in request.query.items()],
            "headers": dict(request.headers),
            "body": await request.text(),
        }
    )


async def _status(request: web.Request) -> web.Response:
    status = int(request.match_info["code"])
    headers = (
        {"Retry-After": request.query["retry_after"]} if "retry_after" in request.query else {}
    )
    body = request.query.get("body", f"status {status} from the server. ") * 30
    return web.Response(status=status, text=body, headers=headers)


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound(request.query["to"])


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(0.5)
    return web.Response(text="late")


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()  # chunked: no Content-Length to refuse it early
    await response.prepare(request)
    for _ in range(8):
        await response.write(b"y" * 512)
    await response.write_eof()
    return response


async def _echo_auth_401(request: web.Request) -> web.Response:
    return web.Response(status=401, text=f"bad credentials: {request.headers['Authorization']}")


async def _webhook(request: web.Request) -> web.Response:
    body = await request.read()
    request.app[RECEIVED].append((dict(request.headers), body))
    valid = verify_signature(
        WEBHOOK_SECRET,
        request.headers["X-Dagflow-Timestamp"],
        body,
        request.headers["X-Dagflow-Signature"],
    )
    return web.Response(status=204 if valid else 401)


RECEIVED = web.AppKey("received", list[tuple[dict[str, str], bytes]])


def _app() -> web.Application:
    app = web.Application()
    app[RECEIVED] = []
    app.router.add_route("*", "/echo", _echo)
    app.router.add_get("/json", _reply(text='{"hello": "world", "n": 1}', content_type=JSON))
    app.router.add_get("/problem", _reply(text='{"title": "nope"}', content_type=PROBLEM))
    app.router.add_get("/text", _reply(text="plain words"))
    app.router.add_get("/big", _reply(text="x" * 4096))
    app.router.add_route("*", "/status/{code}", _status)
    app.router.add_route("*", "/redirect", _redirect)
    app.router.add_get("/loop", _reply(status=302, headers={"Location": "/loop"}))
    app.router.add_get("/slow", _slow)
    app.router.add_get("/stream", _stream)
    app.router.add_get("/auth", _echo_auth_401)
    app.router.add_post("/webhook", _webhook)
    return app


JSON = "application/json"
PROBLEM = "application/problem+json"


def _reply(**response: Any) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(**response)

    return handler


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[tuple[str, web.Application]]:
    app = _app()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", app
    await runner.cleanup()


@pytest.fixture
def base(server: tuple[str, web.Application]) -> str:
    return server[0]


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    client = HttpClient(guard=LOOPBACK, max_body=1024)
    yield client
    await client.close()


Run = Callable[..., Awaitable[Any]]


@pytest.fixture
def http(client: HttpClient) -> Run:
    """Run the http activity in an activity context: ``await http(url=..., ...)``."""
    return _runner(HttpSteps(client, SECRETS).http, "http")


@pytest.fixture
def webhook(client: HttpClient) -> Run:
    return _runner(WebhookSteps(client, SECRETS).webhook, "webhook")


def _runner(fn: Callable[[StepInput], Awaitable[Any]], kind: str) -> Run:
    async def run(secret: str | None = None, **with_: Any) -> Any:
        return await ActivityEnvironment().run(fn, step_input(kind, with_, secret=secret))

    return run


def step_input(kind: str, with_: dict[str, Any], secret: str | None = None) -> StepInput:
    return StepInput.model_validate(
        {
            "tenant": "acme",
            "workflow_id": "acme/orders/run-1",
            "definition": "orders",
            "step": "call",
            "key": "call",
            "kind": kind,
            "with": with_,
            "secret": secret,
            "idempotency_key": "acme/orders/run-1/call/1",
        }
    )


async def failure(call: Awaitable[Any]) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await call
    return caught.value


# --- http: answers ------------------------------------------------------------------------------


async def test_json_body_is_parsed(http: Run, base: str) -> None:
    out = await http(url=f"{base}/json")
    assert out["status"] == 200
    assert out["body"] == {"hello": "world", "n": 1}
    assert out["headers"]["content-type"].startswith("application/json")


async def test_plus_json_body_is_parsed_and_text_stays_text(http: Run, base: str) -> None:
    assert (await http(url=f"{base}/problem"))["body"] == {"title": "nope"}
    assert (await http(url=f"{base}/text"))["body"] == "plain words"


async def test_method_query_headers_and_json_are_sent(http: Run, base: str) -> None:
    out = await http(
        method="post",
        url=f"{base}/echo?fixed=1",
        query={"tag": ["a", "b"], "n": 3, "on": True},
        headers={"X-Trace": "t-1"},
        json={"amount": 12.5, "name": "ü"},
    )
    sent = out["body"]
    assert sent["method"] == "POST"
    assert sent["query"] == [["fixed", "1"], ["tag", "a"], ["tag", "b"], ["n", "3"], ["on", "true"]]
    assert sent["headers"]["X-Trace"] == "t-1"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert json.loads(sent["body"]) == {"amount": 12.5, "name": "ü"}


async def test_raw_body_is_sent_as_text(http: Run, base: str) -> None:
    out = await http(method="PUT", url=f"{base}/echo", body="line one")
    assert out["body"]["body"] == "line one"
    assert out["body"]["headers"]["Content-Type"].startswith("text/plain")


async def test_ok_status_accepts_listed_statuses(http: Run, base: str) -> None:
    assert (await http(url=f"{base}/status/404", ok_status=404))["status"] == 404
    assert (await http(url=f"{base}/status/409", ok_status=[200, 409]))["status"] == 409
    error = await failure(http(url=f"{base}/status/200", ok_status=[201]))
    assert error.non_retryable and "answered 200" in error.message


async def test_response_over_the_limit_fails_for_good(http: Run, base: str) -> None:
    for path in ("/big", "/stream"):
        error = await failure(http(url=f"{base}{path}"))
        assert error.type == "ResponseTooLarge" and error.non_retryable, path
    head = await http(method="HEAD", url=f"{base}/big")  # announces the size, sends no body
    assert head["status"] == 200 and head["body"] == ""


# --- http: failures -----------------------------------------------------------------------------


async def test_404_is_final_and_quotes_the_body(http: Run, base: str) -> None:
    error = await failure(http(url=f"{base}/status/404"))
    assert error.type == "HttpError" and error.non_retryable
    assert "answered 404" in error.message
    assert "status 404 from the server." in error.message
    assert len(error.message) < 700  # an excerpt, not the whole body


@pytest.mark.parametrize("status", [500, 502, 429])
async def test_5xx_and_429_are_retryable(http: Run, base: str, status: int) -> None:
    error = await failure(http(url=f"{base}/status/{status}"))
    assert error.type == "HttpError" and not error.non_retryable
    assert error.next_retry_delay is None


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_becomes_the_next_retry_delay(http: Run, base: str, status: int) -> None:
    error = await failure(http(url=f"{base}/status/{status}?retry_after=7"))
    assert not error.non_retryable
    assert error.next_retry_delay is not None and error.next_retry_delay.total_seconds() == 7


async def test_refused_connection_is_a_retryable_network_error(http: Run) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = await failure(http(url=f"http://127.0.0.1:{port}/"))
    assert error.type == "NetworkError" and not error.non_retryable


async def test_timeout_is_a_retryable_network_error(base: str) -> None:
    client = HttpClient(guard=LOOPBACK, timeout=aiohttp.ClientTimeout(total=0.1))
    try:
        error = await failure(_runner(HttpSteps(client, SECRETS).http, "http")(url=f"{base}/slow"))
    finally:
        await client.close()
    assert error.type == "NetworkError" and not error.non_retryable


@pytest.mark.parametrize(
    ("with_", "field"),
    [
        ({"url": "ftp://example.com/x"}, "with.url"),
        ({"url": "/relative"}, "with.url"),
        ({"method": "FETCH", "url": "http://example.com"}, "with.method"),
        ({"url": "http://example.com", "headers": "${{ input.headers }}"}, "with.headers"),
        ({"url": "http://example.com", "json": {}, "body": "x"}, "with: "),
        ({"url": "http://example.com", "colour": "red"}, "with.colour"),
    ],
)
async def test_bad_inputs_fail_for_good_naming_the_field(
    http: Run, with_: dict[str, Any], field: str
) -> None:
    error = await failure(http(**with_))
    assert error.type == "BadStepInput" and error.non_retryable
    assert field in error.message


# --- http: the address guard --------------------------------------------------------------------


async def test_loopback_is_refused_by_default_by_literal_and_by_name(server: Any) -> None:
    port = server[0].rsplit(":", 1)[1]
    client = HttpClient()
    steps = _runner(HttpSteps(client, SECRETS).http, "http")
    try:
        for url in (f"http://127.0.0.1:{port}/json", f"http://localhost:{port}/json"):
            error = await failure(steps(url=url))
            assert error.type == "AddressNotAllowed" and error.non_retryable, url
            assert "127.0.0.1" in error.message and "--allow-network" in error.message
    finally:
        await client.close()


async def test_localhost_is_reached_when_loopback_is_allowed(http: Run, base: str) -> None:
    port = base.rsplit(":", 1)[1]
    assert (await http(url=f"http://localhost:{port}/json"))["status"] == 200


async def test_redirect_to_a_refused_address_is_refused(base: str) -> None:
    client = HttpClient(guard=AddressGuard(["127.0.0.1/32"]))
    steps = _runner(HttpSteps(client, SECRETS).http, "http")
    try:
        assert (await steps(url=f"{base}/redirect?to=/json"))["body"]["hello"] == "world"
        metadata = "http://169.254.169.254/latest/meta-data/"
        error = await failure(steps(url=f"{base}/redirect?to={metadata}"))
    finally:
        await client.close()
    assert error.type == "AddressNotAllowed"
    assert "169.254.169.254" in error.message


async def test_redirects_can_be_left_unfollowed(http: Run, base: str) -> None:
    out = await http(url=f"{base}/redirect?to=/json", follow_redirects=False, ok_status=302)
    assert out["status"] == 302 and out["headers"]["location"] == "/json"


async def test_redirect_loops_stop(http: Run, base: str) -> None:
    error = await failure(http(url=f"{base}/loop"))
    assert error.type == "TooManyRedirects" and error.non_retryable


# --- http: secrets ------------------------------------------------------------------------------


async def test_secret_is_sent_in_the_configured_header(http: Run, base: str) -> None:
    out = await http(secret="api_token", url=f"{base}/echo")
    assert out["body"]["headers"]["Authorization"] == f"Bearer {API_TOKEN}"
    custom = await http(
        secret="api_token", url=f"{base}/echo", secret_header="X-Api-Key", secret_prefix=""
    )
    assert custom["body"]["headers"]["X-Api-Key"] == API_TOKEN


async def test_secret_never_appears_in_error_messages(http: Run, base: str) -> None:
    error = await failure(http(secret="api_token", url=f"{base}/auth"))
    assert error.type == "HttpError" and "answered 401" in error.message
    assert "bad credentials: Bearer ***" in error.message
    assert API_TOKEN not in error.message


async def test_secret_is_not_forwarded_to_another_origin(http: Run, base: str) -> None:
    other = base.replace("127.0.0.1", "localhost")
    out = await http(secret="api_token", url=f"{base}/redirect?to={other}/echo")
    assert "Authorization" not in out["body"]["headers"]


async def test_missing_secret_fails_for_good_naming_it(http: Run, base: str) -> None:
    error = await failure(http(secret="nope", url=f"{base}/echo"))
    assert error.type == "SecretNotFound" and error.non_retryable
    assert "'nope'" in error.message


# --- webhook ------------------------------------------------------------------------------------


async def test_webhook_is_signed_and_carries_the_idempotency_key(
    webhook: Run, server: tuple[str, web.Application]
) -> None:
    base, app = server
    payload = {"order": "o-1", "total": 12.5, "note": "ü"}
    out = await webhook(
        url=f"{base}/webhook", payload=payload, event="order.paid", headers={"X-Extra": "1"}
    )
    assert out == {"status": 204}  # the receiver verified the signature
    headers, body = app[RECEIVED][-1]
    assert json.loads(body) == payload
    assert body == json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    assert headers["Idempotency-Key"] == "acme/orders/run-1/call/1"
    assert headers["X-Dagflow-Event"] == "order.paid"
    assert headers["X-Extra"] == "1"
    assert headers["Content-Type"] == "application/json"


async def test_webhook_with_another_secret_is_rejected_by_the_receiver(
    webhook: Run, base: str
) -> None:
    error = await failure(webhook(secret="api_token", url=f"{base}/webhook", payload={}))
    assert error.type == "HttpError" and "answered 401" in error.message


async def test_webhook_shares_status_classification_and_guard(webhook: Run, base: str) -> None:
    assert not (await failure(webhook(url=f"{base}/status/503", payload=1))).non_retryable
    assert (await failure(webhook(url=f"{base}/status/400", payload=1))).non_retryable
    refused = await failure(webhook(url="http://10.0.0.1/hook", payload=1))
    assert refused.type == "AddressNotAllowed"


async def test_webhook_without_its_secret_fails_naming_it(base: str) -> None:
    client = HttpClient(guard=LOOPBACK)
    steps = _runner(WebhookSteps(client, SecretStore()).webhook, "webhook")
    try:
        error = await failure(steps(url=f"{base}/webhook", payload={}))
    finally:
        await client.close()
    assert error.type == "SecretNotFound" and "'webhook'" in error.message


def test_verify_signature_rejects_tampering_and_stale_timestamps() -> None:
    from activities.webhook import sign

    body = b'{"a":1}'
    good = sign("k", 1_700_000_000, body)
    assert verify_signature("k", "1700000000", body, good, now=1_700_000_100)
    assert not verify_signature("k", "1700000000", b'{"a":2}', good, now=1_700_000_100)
    assert not verify_signature("other", "1700000000", body, good, now=1_700_000_100)
    assert not verify_signature("k", "1700000000", body, good, now=1_700_001_000)
    assert verify_signature("k", "1700000000", body, good, tolerance=None, now=0)
    assert not verify_signature("k", "soon", body, good)
