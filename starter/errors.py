"""Problem details (RFC 9457) and the one error hierarchy of the service and its client.

The service raises these errors and its middleware answers them as
``application/problem+json``; :class:`~starter.client.DagflowClient` reads such answers back
into the same classes, so code on both sides catches ``NotFound``, ``Invalid`` and the rest.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from workflows.validation import Problem

PROBLEM_JSON = "application/problem+json"


class FieldError(BaseModel):
    """One thing wrong with a request: where (a dotted path) and why."""

    model_config = ConfigDict(extra="ignore")

    path: str
    message: str


class ProblemDetails(BaseModel):
    """The body of every error answer."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = Field(None, description="Every problem, with its path.")


class ApiError(Exception):
    """An error answer: its status, a problem type and the details.

    Args:
        detail: What went wrong, for people.
        errors: Every field problem (validation), each with a path.
    """

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal server error"

    def __init__(
        self, detail: str | None = None, *, errors: Iterable[FieldError | Problem] = ()
    ) -> None:
        items = [FieldError(path=e.path, message=e.message) for e in errors]
        self.problem = ProblemDetails(
            type=f"urn:dagflow:problem:{self.slug}",
            title=self.title,
            status=self.status,
            detail=detail,
            errors=items or None,
        )
        super().__init__(detail or self.title)

    @property
    def errors(self) -> list[FieldError]:
        """The field problems (empty when the error is not about fields)."""
        return self.problem.errors or []

    def headers(self) -> dict[str, str]:
        """Headers the answer carries besides its content type."""
        return {}

    @classmethod
    def from_problem(cls, problem: ProblemDetails, retry_after: float | None = None) -> ApiError:
        """The error for an answer's problem details (the client's side).

        Args:
            problem: The answer's body.
            retry_after: Its ``Retry-After`` header, in seconds, if it had one.
        """
        error = _BY_STATUS.get(problem.status, ApiError)(problem.detail)
        error.problem = problem
        if isinstance(error, Retryable):
            error.retry_after = retry_after
        return error


class Retryable(ApiError):
    """An error worth retrying after ``retry_after`` seconds."""

    def __init__(
        self,
        detail: str | None = None,
        *,
        retry_after: float | None = None,
        errors: Iterable[FieldError | Problem] = (),
    ) -> None:
        super().__init__(detail, errors=errors)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        """``Retry-After`` in whole seconds (at least 1) when known."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class BadRequest(ApiError):
    """The request cannot be read (malformed JSON, a bad query parameter)."""

    status, slug, title = 400, "bad-request", "Bad request"


class Unauthorized(ApiError):
    """No API key, or one that is unknown or revoked."""

    status, slug, title = 401, "unauthorized", "Unauthorized"

    def headers(self) -> dict[str, str]:
        """Tell the caller which scheme to use."""
        return {"WWW-Authenticate": 'Bearer realm="dagflow"'}


class Forbidden(ApiError):
    """The key is valid but may not do this (a tenant key on instance routes, and so on)."""

    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(ApiError):
    """No such resource for this caller (another tenant's resources answer this too)."""

    status, slug, title = 404, "not-found", "Not found"


class MethodNotAllowed(ApiError):
    """The route exists, but not with this method."""

    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class Conflict(ApiError):
    """The resource exists already, or changed under the request."""

    status, slug, title = 409, "conflict", "Conflict"


class PayloadTooLarge(ApiError):
    """The body is over the service's limit."""

    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(ApiError):
    """The body's content type is not one the route reads."""

    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class Invalid(ApiError):
    """The request was read but its content is wrong; ``errors`` lists every problem."""

    status, slug, title = 422, "invalid", "Invalid request"


class RateLimited(Retryable):
    """The tenant is over its request rate."""

    status, slug, title = 429, "rate-limited", "Too many requests"


class ServerError(ApiError):
    """Something failed inside the service; the details are in its log, not here."""


class Unavailable(Retryable):
    """A dependency (the database, Temporal) does not answer; retry later."""

    status, slug, title = 503, "unavailable", "Service unavailable"


_BY_STATUS: dict[int, type[ApiError]] = {
    kind.status: kind
    for kind in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        Invalid,
        RateLimited,
        ServerError,
        Unavailable,
    )
}


def error_for_status(status: int, detail: str | None = None) -> ApiError:
    """The error of the class for ``status``; a plain :class:`ApiError` for other statuses."""
    kind = _BY_STATUS.get(status)
    if kind is not None:
        return kind(detail)
    error = ApiError(detail)
    error.problem.status = status
    return error
