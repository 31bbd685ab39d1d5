"""``uses: webhook``: POST a signed JSON payload, and the signing scheme receivers verify.

The body is the payload as compact JSON, serialised once: the bytes signed are the bytes sent.
Headers:

- ``X-Dagflow-Timestamp``: Unix seconds when the attempt was signed;
- ``X-Dagflow-Signature``: ``sha256=`` + hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` keyed
  with the secret (the step's ``secret``, by default the one named ``webhook``);
- ``Idempotency-Key``: the same for every retry of the step, so receivers can drop repeats;
- ``X-Dagflow-Event``: the step's ``event``, when it gives one.

Webhooks do not follow redirects: a 3xx counts as a failure unless ``ok_status`` lists it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import timedelta

from multidict import CIMultiDict
from temporalio import activity

from activities.client import HttpClient, Request, json_body
from activities.inputs import mapping, ok_statuses, parse_with, resolve_secret, web_url
from activities.secrets import SecretStore
from workflows.definition import WebhookWith
from workflows.types import StepInput

DEFAULT_SECRET = "webhook"
TIMESTAMP_HEADER = "X-Dagflow-Timestamp"
SIGNATURE_HEADER = "X-Dagflow-Signature"
EVENT_HEADER = "X-Dagflow-Event"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE = timedelta(minutes=5)


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The signature of ``body`` sent at ``timestamp``: ``sha256=<hex>``."""
    message = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Content-Type, timestamp and signature headers for a JSON ``body``.

    Args:
        secret: The signing key.
        body: The exact bytes that will be sent.
        timestamp: Unix seconds; now when None.
    """
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: sign(secret, ts, body),
    }


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: bytes | str,
    signature: str,
    tolerance: timedelta | None = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> bool:
    """Whether a webhook request is authentic and recent; for receivers.

    Args:
        secret: The shared signing key.
        timestamp: The ``X-Dagflow-Timestamp`` header.
        body: The raw request body, exactly as received.
        signature: The ``X-Dagflow-Signature`` header.
        tolerance: How far the timestamp may be from ``now`` (replay protection); None skips
            the check.
        now: Unix seconds to compare with; the current time when None.

    Returns:
        True if the signature matches and the timestamp is within the tolerance.
    """
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if tolerance is not None and abs(current - ts) > tolerance.total_seconds():
        return False
    raw = body.encode() if isinstance(body, str) else body
    return hmac.compare_digest(sign(secret, ts, raw), signature)


class WebhookSteps:
    """The ``webhook`` activity, over the worker's shared :class:`HttpClient`.

    Args:
        client: The worker's HTTP client (guard, body limit, session).
        secrets: Where the signing secret is resolved.
    """

    def __init__(self, client: HttpClient, secrets: SecretStore) -> None:
        self._client = client
        self._secrets = secrets

    @activity.defn(name="webhook")
    async def webhook(self, step: StepInput) -> dict[str, int]:
        """POST ``with.payload`` signed (:class:`WebhookWith`).

        Returns:
            ``{"status"}`` of the receiver's answer.

        Raises:
            ApplicationError: ``BadStepInput``, ``SecretNotFound``, ``AddressNotAllowed``,
                ``HttpError``, ``NetworkError``, ``CircuitOpen`` or ``RateLimited``.
        """
        spec = parse_with(WebhookWith, step)
        url = web_url(spec.url)
        secret = resolve_secret(self._secrets, step.tenant, step.secret or DEFAULT_SECRET)
        body = json_body(spec.payload)
        headers = CIMultiDict(mapping(spec.headers, "headers"))
        headers.update(signed_headers(secret, body))
        headers[IDEMPOTENCY_HEADER] = step.idempotency_key
        if spec.event is not None:
            headers[EVENT_HEADER] = spec.event
        request = Request(
            method="POST",
            url=url,
            headers=headers,
            body=body,
            ok_status=ok_statuses(spec.ok_status),
            follow_redirects=False,
            read_body=False,
            circuit_breaker=spec.circuit_breaker,
            rate_limit=spec.rate_limit,
        )
        response = await self._client.send(request)
        return {"status": response.status}
