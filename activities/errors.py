"""The errors step activities raise, in one place: each is an ``ApplicationError`` whose
``type`` is what ``retry.non_retryable`` lists and what operators see in the Web UI.

Messages never carry secret values.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from temporalio.exceptions import ApplicationError

ADDRESS_NOT_ALLOWED = "AddressNotAllowed"
BAD_STEP_INPUT = "BadStepInput"
SECRET_NOT_FOUND = "SecretNotFound"
HTTP_ERROR = "HttpError"
NETWORK_ERROR = "NetworkError"
RESPONSE_TOO_LARGE = "ResponseTooLarge"
TOO_MANY_REDIRECTS = "TooManyRedirects"
CIRCUIT_OPEN = "CircuitOpen"
RATE_LIMITED = "RateLimited"


def bad_step_input(field: str, reason: str) -> ApplicationError:
    """A field of a step's ``with`` is unusable; retrying cannot help."""
    return bad_step_inputs({field: reason})


def bad_step_inputs(reasons: Mapping[str, str]) -> ApplicationError:
    """Fields of a step's ``with`` are unusable, each with its reason ("" for the whole)."""
    message = "; ".join(
        f"with.{field}: {reason}" if field else f"with: {reason}"
        for field, reason in reasons.items()
    )
    return ApplicationError(message, type=BAD_STEP_INPUT, non_retryable=True)


def secret_not_found(name: str, tenant: str) -> ApplicationError:
    """The named secret is not configured for the tenant."""
    return ApplicationError(
        f"secret {name!r} is not configured for tenant {tenant!r} (add it to the secrets file"
        " or set DAGFLOW_SECRET_<NAME> on the worker)",
        type=SECRET_NOT_FOUND,
        non_retryable=True,
    )


def address_not_allowed(host: str, address: str, reason: str) -> ApplicationError:
    """An outbound connection to an internal address was refused."""
    bits = 32 if ":" not in address else 128
    network = f"{address.split('%')[0]}/{bits}"
    return ApplicationError(
        f"refused to connect to {host} ({address}): {reason} addresses are not allowed; "
        f"allow the network with --allow-network {network} or DAGFLOW_ALLOWED_NETWORKS",
        type=ADDRESS_NOT_ALLOWED,
        non_retryable=True,
    )


def http_status(
    method: str, url: str, status: int, excerpt: str, *, retry_after: timedelta | None = None
) -> ApplicationError:
    """A response outside ``ok_status``: retryable for 429 and 5xx, final otherwise."""
    retryable = status == 429 or status >= 500
    message = f"{method} {url} answered {status}"
    if excerpt:
        message += f": {excerpt}"
    return ApplicationError(
        message,
        {"status": status},
        type=HTTP_ERROR,
        non_retryable=not retryable,
        next_retry_delay=retry_after,
    )


def network(method: str, url: str, cause: BaseException) -> ApplicationError:
    """The request did not get an answer (connection refused, reset, timed out, ...)."""
    detail = str(cause) or type(cause).__name__
    return ApplicationError(
        f"{method} {url} failed: {detail}", type=NETWORK_ERROR, non_retryable=False
    )


def response_too_large(method: str, url: str, limit: int) -> ApplicationError:
    """The response body is over the worker's limit."""
    return ApplicationError(
        f"{method} {url}: response body is larger than the limit of {limit} bytes",
        type=RESPONSE_TOO_LARGE,
        non_retryable=True,
    )


def bad_redirect(method: str, url: str, location: str) -> ApplicationError:
    """A redirect points somewhere other than an http(s) URL."""
    return ApplicationError(
        f"{method} {url} redirected to {location!r}, which is not an http(s) URL",
        type=HTTP_ERROR,
        non_retryable=True,
    )


def too_many_redirects(method: str, url: str, hops: int) -> ApplicationError:
    """The redirect chain is longer than allowed."""
    return ApplicationError(
        f"{method} {url}: more than {hops} redirects", type=TOO_MANY_REDIRECTS, non_retryable=True
    )


def circuit_open(host: str, retry_in: timedelta) -> ApplicationError:
    """The host's circuit breaker is open: nothing was sent; retry when it lets a probe by."""
    return ApplicationError(
        f"circuit breaker for {host} is open after repeated failures: no request was sent;"
        f" a probe goes through in {retry_in.total_seconds():.1f}s",
        {"host": host},
        type=CIRCUIT_OPEN,
        non_retryable=False,
        next_retry_delay=retry_in,
    )


def rate_limited(host: str, retry_in: timedelta) -> ApplicationError:
    """The host's rate limit has no token within the wait allowed: retry when one is free."""
    return ApplicationError(
        f"rate limit for {host}: no request slot for {retry_in.total_seconds():.1f}s,"
        " longer than rate_limit.max_wait; no request was sent",
        {"host": host},
        type=RATE_LIMITED,
        non_retryable=False,
        next_retry_delay=retry_in,
    )
