"""The outbound HTTP client that the ``http`` and ``webhook`` steps share.

One :class:`HttpClient` per worker holds one ``aiohttp.ClientSession``. It applies the address
guard (on every redirect hop too), caps response bodies, and turns answers into step outcomes:
a status in ``ok_status`` is a result; 429, 5xx and network failures are retryable errors; any
other status is a final error that quotes the start of the response body.
"""

from __future__ import annotations

import asyncio
import codecs
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import aiohttp
from multidict import CIMultiDict
from temporalio import activity
from temporalio.exceptions import ApplicationError
from yarl import URL

from activities import errors
from activities.netguard import AddressGuard, GuardedResolver
from activities.protection import HostProtection, host_key
from workflows.definition import CircuitBreaker, RateLimit

DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_MAX_REDIRECTS = 10
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
"""Per request: the step's own ``timeout`` bounds the whole attempt."""
USER_AGENT = "dagflow"

EXCERPT_CHARS = 500
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_AFTER_STATUSES = frozenset({429, 503})
ORIGIN_BOUND_HEADERS = ("Authorization", "Proxy-Authorization", "Cookie")
"""Dropped when a redirect leaves the origin, as browsers and aiohttp itself do."""
BODY_HEADERS = ("Content-Type", "Content-Length", "Content-Encoding")


@dataclass(frozen=True)
class Credential:
    """A secret sent in a header: masked in error messages and dropped when a redirect leaves
    the origin it was meant for."""

    header: str
    secret: str = field(repr=False)
    prefix: str = ""


@dataclass(frozen=True)
class Request:
    """One outbound request, as a step describes it.

    Attributes:
        method: The HTTP method.
        url: An absolute http(s) URL.
        headers: Request headers.
        body: The request body.
        ok_status: Statuses that count as success; any 2xx when None.
        follow_redirects: Follow 301, 302, 303, 307 and 308. A 303, or a 301/302 answer to a
            POST, continues as a GET without a body.
        credential: A secret header, sent only to the origin of ``url``.
        read_body: Read the body of a successful response (else it stays empty).
        circuit_breaker: The step's breaker for the host of ``url``: None for the worker's
            default, False for none.
        rate_limit: The step's rate limit for the host of ``url``: None for the worker's
            default, False for none.
    """

    method: str
    url: URL
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    ok_status: Collection[int] | None = None
    follow_redirects: bool = True
    credential: Credential | None = None
    read_body: bool = True
    circuit_breaker: CircuitBreaker | Literal[False] | None = None
    rate_limit: RateLimit | Literal[False] | None = None

    def wire_headers(self) -> CIMultiDict[str]:
        """The headers to send, with the credential's."""
        headers = CIMultiDict(self.headers)
        if self.credential is not None:
            headers[self.credential.header] = self.credential.prefix + self.credential.secret
        return headers

    def is_ok(self, status: int) -> bool:
        """Whether ``status`` counts as success."""
        return 200 <= status < 300 if self.ok_status is None else status in self.ok_status

    def redirected(self, status: int, location: str) -> Request:
        """The request to send next when the answer was redirect ``status`` to ``location``.

        Raises:
            ApplicationError: Non-retryable ``HttpError`` if the target is not an http(s) URL.
        """
        url = self.url.join(URL(location))
        if not is_web_url(url):
            raise errors.bad_redirect(self.method, str(self.url), location)
        next_request = replace(self, url=url)
        if status == 303 or (status in (301, 302) and self.method == "POST"):
            next_request = replace(
                next_request,
                method="HEAD" if self.method == "HEAD" else "GET",
                body=None,
                headers=_without(next_request.headers, BODY_HEADERS),
            )
        if url.origin() != self.url.origin():
            next_request = replace(
                next_request,
                headers=_without(next_request.headers, ORIGIN_BOUND_HEADERS),
                credential=None,
            )
        return next_request

    def mask(self, text: str) -> str:
        """``text`` with the credential's secret masked."""
        if self.credential is None or not self.credential.secret:
            return text
        return text.replace(self.credential.secret, "***")


@dataclass(frozen=True)
class Response:
    """A response whose status counted as success."""

    status: int
    headers: dict[str, str]
    content: bytes
    content_type: str
    charset: str | None

    def text(self) -> str:
        """The body decoded with the response's charset (UTF-8 when unknown)."""
        return _decode(self.content, self.charset)

    def data(self) -> Any:
        """The body parsed as JSON when the content type says JSON, else the text.

        A JSON response with an empty body is ``None``; one that does not parse is its text.
        """
        if not is_json(self.content_type):
            return self.text()
        if not self.content.strip():
            return None
        try:
            return json.loads(self.content)
        except ValueError:
            return self.text()


@dataclass(frozen=True)
class _Redirect:
    status: int
    location: str


def is_json(content_type: str) -> bool:
    """Whether a media type is JSON (``application/json`` or any ``+json`` type)."""
    return content_type == "application/json" or content_type.endswith("+json")


def json_body(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def is_web_url(url: URL) -> bool:
    """Whether ``url`` is an absolute http or https URL with a host."""
    return url.scheme in ("http", "https") and bool(url.host)


class HttpClient:
    """The worker's one HTTP session, guarded and capped.

    The session is created on first use inside the running event loop; call :meth:`close` when
    the worker stops. It keeps no cookies, since steps of every tenant share it, and ignores
    proxy variables, so the guard checks the address actually connected to.

    Args:
        guard: Which addresses may be reached; by default every internal address is refused.
        max_body: Largest response body accepted, in bytes (after decompression).
        max_redirects: Redirect hops followed before giving up.
        timeout: aiohttp timeouts of one request.
        protection: Circuit breakers and rate limits per host, with the worker's defaults
            (by default none, unless a step sets its own).
    """

    def __init__(
        self,
        *,
        guard: AddressGuard | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        protection: HostProtection | None = None,
    ) -> None:
        self.guard = guard or AddressGuard()
        self.max_body = max_body
        self.max_redirects = max_redirects
        self.timeout = timeout
        self.protection = protection or HostProtection()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close the session (a later request opens a new one)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, request: Request) -> Response:
        """Send a request, following redirects by hand so that every hop is guarded.

        The circuit breaker and rate limit of the request's host (that of its first URL) apply
        to the whole exchange, redirects included.

        Returns:
            The successful response.

        Raises:
            ApplicationError: Typed as in :mod:`activities.errors`.
        """
        return await self.protection.call(
            host_key(request.url),
            lambda: self._send_in_time(request),
            circuit_breaker=request.circuit_breaker,
            rate_limit=request.rate_limit,
        )

    async def _send_in_time(self, request: Request) -> Response:
        """:meth:`_send`, given up as a ``NetworkError`` when the activity's attempt times out
        (Temporal does not cancel a timed-out attempt on the worker), so that the host's
        circuit breaker counts it and the worker does not wait on for a dead answer."""
        left = attempt_time_left()
        if left is None:
            return await self._send(request)
        try:
            async with asyncio.timeout(left):
                return await self._send(request)
        except TimeoutError:
            reason = TimeoutError(f"no answer within the step's timeout ({left:.1f}s left)")
            raise errors.network(request.method, str(request.url), reason) from None

    async def _send(self, request: Request) -> Response:
        first = request
        for _ in range(self.max_redirects + 1):
            answer = await self._exchange(request)
            if isinstance(answer, Response):
                return answer
            request = request.redirected(answer.status, answer.location)
        raise errors.too_many_redirects(first.method, str(first.url), self.max_redirects)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=GuardedResolver(self.guard)),
                timeout=self.timeout,
                headers={"User-Agent": USER_AGENT},
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        return self._session

    async def _exchange(self, request: Request) -> Response | _Redirect:
        method, url = request.method, request.url
        self.guard.check_literal(url.host or "")
        try:
            async with self._open().request(
                method,
                url,
                headers=request.wire_headers(),
                data=request.body,
                allow_redirects=False,
            ) as resp:
                return await self._answer(request, resp)
        except aiohttp.InvalidURL as exc:
            raise errors.bad_step_input("url", f"{url} is not a valid URL: {exc}") from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise errors.network(method, str(url), exc) from exc

    async def _answer(self, request: Request, resp: aiohttp.ClientResponse) -> Response | _Redirect:
        location = resp.headers.get("Location")
        if request.follow_redirects and resp.status in REDIRECT_STATUSES and location:
            return _Redirect(resp.status, location)
        if not request.is_ok(resp.status):
            raise await self._status_error(request, resp)
        return Response(
            status=resp.status,
            headers=_flat_headers(resp),
            content=await self._body(request, resp) if _has_body(request) else b"",
            content_type=resp.content_type,
            charset=resp.charset,
        )

    async def _body(self, request: Request, resp: aiohttp.ClientResponse) -> bytes:
        too_large = errors.response_too_large(request.method, str(request.url), self.max_body)
        if (resp.content_length or 0) > self.max_body:
            raise too_large
        content = await _read_upto(resp.content, self.max_body)
        if len(content) > self.max_body:
            raise too_large
        return content

    @staticmethod
    async def _status_error(request: Request, resp: aiohttp.ClientResponse) -> ApplicationError:
        head = await _read_upto(resp.content, EXCERPT_CHARS * 4)
        excerpt = _decode(head, resp.charset).strip()
        if len(excerpt) > EXCERPT_CHARS or len(head) > EXCERPT_CHARS * 4:
            excerpt = excerpt[:EXCERPT_CHARS] + "…"
        retry_after = None
        if resp.status in RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        return errors.http_status(
            request.method,
            str(request.url),
            resp.status,
            request.mask(excerpt),
            retry_after=retry_after,
        )


def parse_retry_after(value: str | None, now: datetime | None = None) -> timedelta | None:
    """The wait a ``Retry-After`` header asks for (seconds or an HTTP date), if positive."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        delay = timedelta(seconds=int(value))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = when - (now or datetime.now(UTC))
    return delay if delay > timedelta(0) else None


def attempt_time_left(now: datetime | None = None) -> float | None:
    """Seconds left before the running activity's attempt times out (start-to-close).

    None outside an activity, without a start-to-close timeout, or when the deadline has
    already passed (the server has given up on the attempt; test environments start attempts
    at the epoch).
    """
    if not activity.in_activity():
        return None
    info = activity.info()
    if info.start_to_close_timeout is None:
        return None
    deadline = info.started_time + info.start_to_close_timeout
    left = (deadline - (now or datetime.now(UTC))).total_seconds()
    return left if left > 0 else None


def _has_body(request: Request) -> bool:
    """Whether the response's body is wanted (a HEAD answer has none to read)."""
    return request.read_body and request.method != "HEAD"


async def _read_upto(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """Read until EOF or until more than ``limit`` bytes have arrived (at most limit + 1)."""
    buffer = bytearray()
    while len(buffer) <= limit:
        chunk = await stream.read(limit + 1 - len(buffer))
        if not chunk:
            break
        buffer += chunk
    return bytes(buffer)


def _flat_headers(resp: aiohttp.ClientResponse) -> dict[str, str]:
    """Response headers with lower-case names; repeated headers joined with ``", "``."""
    flat: dict[str, str] = {}
    for name, value in resp.headers.items():
        key = name.lower()
        flat[key] = f"{flat[key]}, {value}" if key in flat else value
    return flat


def _without(headers: Mapping[str, str], names: Collection[str]) -> dict[str, str]:
    drop = {name.lower() for name in names}
    return {k: v for k, v in headers.items() if k.lower() not in drop}


def _decode(content: bytes, charset: str | None) -> str:
    try:
        codec = codecs.lookup(charset or "utf-8").name
    except LookupError:
        codec = "utf-8"
    return content.decode(codec, errors="replace")
