"""The middleware chain: problem answers for every error, then authentication, then rate
limits. Reading and checking input, and the transaction, are the route adapter's
(:mod:`starter.routes.table`)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import yarl
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from temporalio.service import RPCError, RPCStatusCode

from starter import keys
from starter.auth import (
    CODEC_SESSION_COOKIE,
    Principal,
    authenticate,
    authenticate_codec_session,
    bearer_token,
    codec_session_secret,
    hash_key,
)
from starter.errors import (
    PROBLEM_JSON,
    ApiError,
    Conflict,
    Forbidden,
    MethodNotAllowed,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    Unauthorized,
    Unavailable,
    error_for_status,
)
from starter.metrics import phase
from starter.routes.table import route_of
from worker.payloads import TOO_LARGE, too_large

log = logging.getLogger("dagflow.starter")

RETRY_AFTER = 5.0
"""Seconds a caller is told to wait when a dependency does not answer."""
UNREACHABLE_RPC = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED})
INSTANCE_BUCKET = "*instance*"


def problem_response(error: ApiError) -> web.Response:
    """The ``application/problem+json`` answer of an error."""
    return web.Response(
        text=error.problem.model_dump_json(exclude_none=True),
        status=error.problem.status,
        content_type=PROBLEM_JSON,
        headers=error.headers(),
    )


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error as problem+json; never let internals out."""
    try:
        return await handler(request)
    except ApiError as error:
        return problem_response(error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _http_problem(request, error)
    except IntegrityError:
        log.info("conflict on %s %s", request.method, request.path, exc_info=True)
        return problem_response(Conflict("the change conflicts with another one; retry"))
    except (OperationalError, InterfaceError) as error:
        log.warning("database unavailable on %s %s: %s", request.method, request.path, error)
        return problem_response(
            Unavailable("the database does not answer", retry_after=RETRY_AFTER)
        )
    except (ConnectionError, TimeoutError) as error:
        log.warning("%s %s: a dependency does not answer: %s", request.method, request.path, error)
        return problem_response(
            Unavailable("the database or Temporal does not answer", retry_after=RETRY_AFTER)
        )
    except DBAPIError as error:
        if error.connection_invalidated:
            return problem_response(
                Unavailable("the database connection was lost", retry_after=RETRY_AFTER)
            )
        return _internal(request, error)
    except RPCError as error:
        if too_large(error):
            return problem_response(PayloadTooLarge(f"the request's data is {TOO_LARGE}"))
        if error.status in UNREACHABLE_RPC:
            return problem_response(
                Unavailable("Temporal does not answer", retry_after=RETRY_AFTER)
            )
        return _internal(request, error)
    except Exception as error:
        return _internal(request, error)


def _http_problem(request: web.Request, error: web.HTTPException) -> web.Response:
    if isinstance(error, web.HTTPRequestEntityTooLarge):
        limit = request.app[keys.SETTINGS].max_body_bytes
        return problem_response(PayloadTooLarge(f"the body is over the limit of {limit} bytes"))
    if isinstance(error, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(error.allowed_methods))
        answer = problem_response(
            MethodNotAllowed(f"{request.method} is not allowed here; use {allowed}")
        )
        answer.headers["Allow"] = allowed
        return answer
    if isinstance(error, web.HTTPNotFound):
        return problem_response(error_for_status(404, f"no route {request.path}"))
    return problem_response(error_for_status(error.status, error.reason))


def _internal(request: web.Request, error: BaseException) -> web.Response:
    incident = uuid.uuid4().hex[:12]
    log.error("incident %s: %s %s failed", incident, request.method, request.path, exc_info=error)
    return problem_response(ServerError(f"the service failed (incident {incident} in its log)"))


@web.middleware
async def authentication(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Find who calls from the bearer key, and check the route is theirs to call."""
    route = route_of(request)
    if route is None or route.access == "public":
        return await handler(request)
    cookie = request.cookies.get(CODEC_SESSION_COOKIE)
    with phase(request, "authenticate"):
        if route.session_cookie and cookie and "Authorization" not in request.headers:
            principal = await _codec_session(request, cookie)
        else:
            token = bearer_token(request.headers.get("Authorization"))
            principal = await _principal(request.app, token)
    if route.access == "instance" and not principal.is_instance:
        raise Forbidden("instance administration needs an instance key")
    if route.access == "tenant" and principal.is_instance:
        raise Forbidden(
            "this route is for tenant keys; instance keys manage instance definitions "
            "under /v1/instance/definitions"
        )
    request[keys.PRINCIPAL] = principal
    return await handler(request)


async def _codec_session(request: web.Request, cookie: str) -> Principal:
    keyring = request.app[keys.SETTINGS].keyring()
    if keyring is None:
        raise Unauthorized("payload encryption is off, so there are no codec sessions")
    secret = codec_session_secret(keyring.keys[keyring.current])
    bootstrap = request.app[keys.BOOTSTRAP_KEY_HASH]
    now = time.time()
    return await request.app[keys.DB_RUNNER].read(
        lambda c: authenticate_codec_session(c, cookie, bootstrap, secret, now)
    )


async def _principal(app: web.Application, token: str) -> Principal:
    """Who the key stands for: from the key cache, else from the database (then kept).

    Requests with the same key that miss the cache at once share one lookup.
    """
    cache = app[keys.KEY_CACHE]
    digest = hash_key(token)
    principal = cache.get(digest)
    if principal is not None:
        return principal
    pending = app[keys.KEY_LOOKUPS]
    lookup = pending.get(digest)
    if lookup is None:
        lookup = pending[digest] = asyncio.ensure_future(_look_up(app, token, digest))
        lookup.add_done_callback(lambda _: pending.pop(digest, None))
    return await asyncio.shield(lookup)


async def _look_up(app: web.Application, token: str, digest: str) -> Principal:
    cache = app[keys.KEY_CACHE]
    generation = cache.generation
    bootstrap = app[keys.BOOTSTRAP_KEY_HASH]
    principal = await app[keys.DB_RUNNER].read(lambda c: authenticate(c, token, bootstrap))
    cache.put(digest, principal, generation)
    return principal


@web.middleware
async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Spend a token of the caller's tenant; answer 429 with Retry-After when none is left."""
    principal = request.get(keys.PRINCIPAL)
    if principal is not None:
        bucket = principal.tenant_id or INSTANCE_BUCKET
        wait = request.app[keys.LIMITER].take(bucket)
        if wait is not None:
            raise RateLimited(
                f"over the rate limit of {request.app[keys.LIMITER].rate:g} requests per second",
                retry_after=wait,
            )
    return await handler(request)


CODEC_PATHS = "/codec/"
CORS_HEADERS = "Authorization, Content-Type, X-Namespace"


@web.middleware
async def codec_cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CORS for the codec server, for the origins of ``DAGFLOW_CODEC_CORS_ORIGINS`` only:
    preflights answered, other origins refused with 403, credentials allowed."""
    origin = request.headers.get("Origin")
    if not request.path.startswith(CODEC_PATHS) or origin is None:
        return await handler(request)
    if _same_origin(request, origin):
        return await handler(request)  # the sign-in page's own form
    if origin.rstrip("/") not in request.app[keys.SETTINGS].codec_cors_origins:
        return problem_response(Forbidden(f"origin {origin!r} may not call the codec server"))
    allow = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }
    if request.method == "OPTIONS":
        return web.Response(
            status=204,
            headers={
                **allow,
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": CORS_HEADERS,
                "Access-Control-Max-Age": "600",
            },
        )
    answer = await handler(request)
    answer.headers.update(allow)
    return answer


def _same_origin(request: web.Request, origin: str) -> bool:
    """Whether a browser's ``Origin`` is this service itself (host and port; the scheme may
    differ behind a proxy that ends TLS)."""
    url, own = yarl.URL(origin), yarl.URL(f"{request.scheme}://{request.host}")
    return (url.host, url.port) == (own.host, own.port)


MIDDLEWARES: list[Middleware] = [codec_cors, problems, authentication, rate_limit]
"""Outermost first."""
