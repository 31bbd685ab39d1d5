"""Codec sessions: how a browser running the Temporal Web UI authenticates to the codec server.

The Web UI sends a bearer token to a codec server only when it has signed its user in with
OIDC (and only over HTTPS); with its "include cross-origin credentials" setting it sends
cookies instead. So an operator opens ``/codec/session`` on the starter once, signs in there
with their dagflow API key, and gets a cookie that the codec routes accept in place of the key:

- the cookie is ``HttpOnly``, limited to ``/codec``, and holds the key's prefix, an expiry and
  a signature (never the key or its hash); the signature is made with a secret derived from
  the current encryption key and covers the key's stored hash, so a session ends when it
  expires (``DAGFLOW_CODEC_SESSION_HOURS``), when its key is revoked, or when the current
  encryption key changes;
- over plain HTTP it is ``SameSite=Lax``, which browsers send from a Web UI on the same host
  (another port is the same site); over HTTPS (or behind a proxy that says
  ``X-Forwarded-Proto: https``) it is ``SameSite=None; Secure``, for a UI on another site;
- the codec routes still answer CORS only for ``DAGFLOW_CODEC_CORS_ORIGINS``, so another page
  in the same browser cannot read what the cookie decodes.

The form posts the key (``application/x-www-form-urlencoded``, field ``key``); scripts may send
``Authorization: Bearer <key>`` instead.
"""

from __future__ import annotations

import html
import time
from datetime import UTC, datetime
from typing import Any, Self

from aiohttp import web
from pydantic import RootModel

from starter import keys
from starter.auth import (
    CODEC_SESSION_COOKIE,
    Principal,
    authenticate,
    authenticate_codec_session,
    bearer_token,
    codec_session,
    codec_session_secret,
    hash_key,
)
from starter.errors import BadRequest, FieldError, NotFound, Unauthorized, UnsupportedMediaType
from starter.routes.table import Call, Route

PAGE = "/codec/session"
HTML = "text/html"
FORM = "application/x-www-form-urlencoded"


class SessionPage(RootModel[str]):
    """An HTML page: the sign-in form, or who is signed in and how to set up the Web UI."""


class SignIn:
    """The sign-in form's body: the API key, as form field ``key`` or as a bearer header."""

    def __init__(self, key: str, from_form: bool) -> None:
        self.key = key
        self.from_form = from_form

    @classmethod
    async def from_request(cls, request: web.Request) -> Self:
        """Read the key from the form, or from ``Authorization: Bearer``.

        Raises:
            UnsupportedMediaType: If a body is sent that is not a form.
            BadRequest: If no key is given.
        """
        if request.content_type == FORM:
            form = await request.post()
            key = form.get("key")
            if not isinstance(key, str) or not key.strip():
                message = "paste an API key"
                raise BadRequest(message, errors=[FieldError(path="key", message=message)])
            return cls(key.strip(), from_form=True)
        if request.can_read_body and request.content_length:
            raise UnsupportedMediaType(f"send the sign-in form as {FORM}")
        return cls(bearer_token(request.headers.get("Authorization")), from_form=False)

    @classmethod
    def openapi_body(cls) -> dict[str, Any]:
        """The form, with one field ``key`` (or no body and a bearer key)."""
        schema = {
            "type": "object",
            "required": ["key"],
            "properties": {"key": {"type": "string", "description": "A dagflow API key."}},
        }
        return {
            "required": False,
            "description": "The API key as form field `key`; or no body and "
            "`Authorization: Bearer <key>`.",
            "content": {FORM: {"schema": schema}},
        }


async def session_page(call: Call[None]) -> web.Response:
    """The codec session page: sign in with an API key, or see who is signed in."""
    request = call.request
    cookie = request.cookies.get(CODEC_SESSION_COOKIE)
    signed_in: tuple[Principal, int] | None = None
    problem = ""
    if cookie and _secret(request) is not None:
        try:
            signed_in = await _session_of(request, cookie), _expiry(cookie)
        except Unauthorized as error:
            problem = error.problem.detail or ""
    return _page(request, signed_in, problem)


async def sign_in(call: Call[SignIn]) -> web.Response:
    """Sign in to the codec server with an API key: sets the session cookie."""
    request, form = call.request, call.input
    secret = _secret(request)
    if secret is None:
        return _refuse(request, form, 404, "payload encryption is off, so there is nothing "
                       "to decode and no codec session")  # fmt: skip
    try:
        bootstrap = request.app[keys.BOOTSTRAP_KEY_HASH]
        principal = await request.app[keys.DB_RUNNER].read(
            lambda c: authenticate(c, form.key, bootstrap)
        )
    except Unauthorized as error:
        return _refuse(request, form, 401, error.problem.detail or "unknown API key")
    hours = request.app[keys.SETTINGS].codec_session_hours
    expires = int(time.time() + hours * 3600)
    answer = _see_other()
    answer.set_cookie(
        CODEC_SESSION_COOKIE,
        codec_session(secret, principal, hash_key(form.key), expires),
        max_age=int(hours * 3600),
        path="/codec",
        httponly=True,
        **_site_attributes(request),
    )
    return answer


async def sign_out(call: Call[None]) -> web.Response:
    """Sign out of the codec server: clears the session cookie."""
    answer = _see_other()
    answer.del_cookie(CODEC_SESSION_COOKIE, path="/codec", **_site_attributes(call.request))
    return answer


def _see_other() -> web.Response:
    return web.Response(status=303, headers={"Location": PAGE}, text=f"See {PAGE}")


def _secret(request: web.Request) -> bytes | None:
    keyring = request.app[keys.SETTINGS].keyring()
    return None if keyring is None else codec_session_secret(keyring.keys[keyring.current])


async def _session_of(request: web.Request, cookie: str) -> Principal:
    secret = _secret(request)
    assert secret is not None
    bootstrap = request.app[keys.BOOTSTRAP_KEY_HASH]
    now = time.time()
    return await request.app[keys.DB_RUNNER].read(
        lambda c: authenticate_codec_session(c, cookie, bootstrap, secret, now)
    )


def _expiry(cookie: str) -> int:
    return int(cookie.split(".")[1])


def _secure(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _site_attributes(request: web.Request) -> dict[str, Any]:
    if _secure(request):
        return {"secure": True, "samesite": "None"}
    return {"samesite": "Lax"}


def _refuse(request: web.Request, form: SignIn, status: int, reason: str) -> web.Response:
    if form.from_form:
        return _page(request, None, reason, status)
    raise Unauthorized(reason) if status == 401 else NotFound(reason)


def _page(
    request: web.Request, signed_in: tuple[Principal, int] | None, problem: str, status: int = 200
) -> web.Response:
    base = f"{'https' if _secure(request) else request.scheme}://{request.host}"
    encryption = request.app[keys.SETTINGS].keyring() is not None
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<title>dagflow codec server</title><style>",
        "body{font:15px/1.5 system-ui,sans-serif;max-width:42rem;margin:3rem auto;padding:0 1rem}",
        "code{background:#eef;padding:0 .25rem}.problem{color:#a00}",
        "input{font:inherit;width:100%;padding:.3rem}button{font:inherit;margin-top:.5rem}",
        "</style></head><body><h1>dagflow codec server</h1>",
    ]
    if not encryption:
        parts.append("<p>Payload encryption is off in this service, so payloads need no codec.")
    elif signed_in is not None:
        principal, expires = signed_in
        who = (
            "the instance: every tenant's payloads"
            if principal.is_instance
            else f"tenant <b>{html.escape(principal.tenant)}</b>: its own payloads"
        )
        until = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M UTC")
        parts += [
            f"<p id=signed-in>Signed in with key <code>{html.escape(principal.key_prefix)}</code> "
            f"({html.escape(principal.key_name)}) for {who}, until {until}.</p>",
            "<p>In the Temporal Web UI, open the codec server settings (the glasses icon), set "
            f"the endpoint to <code>{html.escape(base)}/codec</code> and turn on "
            "<i>Include cross-origin credentials</i>.</p>",
            f'<form method=post action="{PAGE}/sign-out"><button>Sign out</button></form>',
        ]
    else:
        if problem:
            parts.append(f"<p class=problem role=alert>{html.escape(problem)}</p>")
        parts += [
            "<p>Sign in with a dagflow API key so that the Temporal Web UI in this browser can "
            "decode the payloads it may see: a tenant key its tenant's, an instance key "
            "every tenant's.</p>",
            f'<form method=post action="{PAGE}"><label for=key>API key</label>',
            "<input id=key name=key type=password autocomplete=off required>",
            "<button>Sign in</button></form>",
        ]
    parts.append("</body></html>")
    return web.Response(text="".join(parts), status=status, content_type=HTML)


ROUTES: list[Route[Any, Any]] = [
    Route("GET", PAGE, session_page, SessionPage, access="public", tag="codec",
          media_types=(HTML,)),
    Route("POST", PAGE, sign_in, SessionPage, SignIn, status=303, access="public", tag="codec",
          media_types=(HTML,),
          errors=((401, "The key is unknown or revoked (a form post gets the page again)."),
                  (404, "Payload encryption is off in this service."))),
    Route("POST", f"{PAGE}/sign-out", sign_out, SessionPage, status=303, access="public",
          tag="codec", media_types=(HTML,)),
]  # fmt: skip
