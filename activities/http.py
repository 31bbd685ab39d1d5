"""``uses: http``: one HTTP request, its answer as the step's output."""

from __future__ import annotations

from typing import Any

from multidict import CIMultiDict
from temporalio import activity
from yarl import URL

from activities import errors
from activities.client import Credential, HttpClient, Request, json_body
from activities.inputs import mapping, ok_statuses, parse_with, resolve_secret, web_url
from activities.secrets import SecretStore
from workflows.definition import HttpWith
from workflows.types import StepInput


class HttpSteps:
    """The ``http`` activity, over the worker's shared :class:`HttpClient`.

    Args:
        client: The worker's HTTP client (guard, body limit, session).
        secrets: Where a step's named secret is resolved.
    """

    def __init__(self, client: HttpClient, secrets: SecretStore) -> None:
        self._client = client
        self._secrets = secrets

    @activity.defn(name="http")
    async def http(self, step: StepInput) -> dict[str, Any]:
        """Send the request that ``step.with_`` describes (:class:`HttpWith`).

        A secret named by ``step.secret`` goes in ``with.secret_header`` after
        ``with.secret_prefix`` (``Authorization: Bearer <value>`` by default).

        Returns:
            ``{"status", "headers", "body"}``: header names lower-cased; the body parsed JSON
            for JSON responses, else text.

        Raises:
            ApplicationError: ``BadStepInput``, ``SecretNotFound``, ``AddressNotAllowed``,
                ``HttpError``, ``NetworkError``, ``ResponseTooLarge``, ``TooManyRedirects``,
                ``CircuitOpen`` or ``RateLimited``.
        """
        spec = parse_with(HttpWith, step)
        response = await self._client.send(self._request(step, spec))
        return {"status": response.status, "headers": response.headers, "body": response.data()}

    def _request(self, step: StepInput, spec: HttpWith) -> Request:
        headers = CIMultiDict(mapping(spec.headers, "headers"))
        body = _body(spec, headers)
        credential = None
        if step.secret is not None:
            secret = resolve_secret(self._secrets, step.tenant, step.secret)
            credential = Credential(spec.secret_header, secret, spec.secret_prefix)
        return Request(
            method=str(spec.method),
            url=with_query(web_url(spec.url), mapping(spec.query, "query")),
            headers=headers,
            body=body,
            ok_status=ok_statuses(spec.ok_status),
            follow_redirects=bool(spec.follow_redirects),
            credential=credential,
            circuit_breaker=spec.circuit_breaker,
            rate_limit=spec.rate_limit,
        )


def with_query(url: URL, query: dict[str, Any]) -> URL:
    """``url`` with ``query`` added: lists repeat a key, booleans are ``true``/``false``.

    Raises:
        ApplicationError: ``BadStepInput`` for a value that is an object or null.
    """
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, _query_value(key, item)))
    return url.extend_query(pairs) if pairs else url


def _query_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise errors.bad_step_input(f"query.{key}", "must be a string, number, boolean or a list")


def _body(spec: HttpWith, headers: CIMultiDict[str]) -> bytes | None:
    """The request body, setting a Content-Type unless the step gave one."""
    if spec.json_ is not None:
        headers.setdefault("Content-Type", "application/json")
        return json_body(spec.json_)
    if spec.body is not None:
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        return spec.body.encode()
    return None
