"""The codec server: ``POST /codec/decode`` and ``/codec/encode`` for the Temporal Web UI and
the ``temporal`` CLI (``--codec-endpoint``), with the keyring of ``DAGFLOW_ENCRYPTION_KEYS``.

Any key may call them. An instance key decodes every tenant's payloads; a tenant key decodes
its own tenant's only, and another tenant's payloads (or ones that do not decrypt) come back
still encrypted, so a page of the Web UI shows what the caller may see and nothing more.
Encoding encrypts for the caller's tenant (an instance key: for no tenant, which any run
accepts). CORS for browsers is :func:`starter.middleware.codec_cors`'s.
"""

from __future__ import annotations

import contextlib
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload

from starter import keys
from starter.api.codec import CodecPayloads, JsonPayload
from starter.errors import BadRequest, FieldError, NotFound
from starter.routes.table import Call, PathParam, Route
from worker.codec import DecryptionError, Keyring, decrypt, encrypt, is_encrypted, payload_tenant

NAMESPACE_HEADER = PathParam(
    r"^[A-Za-z0-9._-]{1,255}$",
    "The Temporal namespace (sent by the Web UI; the keyring is the same for every namespace).",
)


async def codec_decode(call: Call[CodecPayloads]) -> CodecPayloads:
    """Decode payloads: the caller's tenant's (every tenant's for an instance key)."""
    keyring = _keyring(call)
    principal = call.principal
    out = []
    for payload in _payloads(call.input):
        if is_encrypted(payload) and (
            principal.is_instance or payload_tenant(payload) == principal.tenant_id
        ):
            with contextlib.suppress(DecryptionError):
                payload = decrypt(keyring, payload)
        out.append(_json(payload))
    return CodecPayloads(payloads=out)


async def codec_encode(call: Call[CodecPayloads]) -> CodecPayloads:
    """Encode payloads for the caller's tenant (for no tenant with an instance key)."""
    keyring = _keyring(call)
    tenant = call.principal.tenant_id or ""
    return CodecPayloads(
        payloads=[_json(encrypt(keyring, p, tenant)) for p in _payloads(call.input)]
    )


def _keyring(call: Call[Any]) -> Keyring:
    keyring = call.request.app[keys.SETTINGS].keyring()
    if keyring is None:
        raise NotFound("payload encryption is off: this service has no DAGFLOW_ENCRYPTION_KEYS")
    return keyring


def _payloads(body: CodecPayloads) -> list[Payload]:
    out = []
    for index, item in enumerate(body.payloads):
        try:
            out.append(json_format.ParseDict(item.model_dump(), Payload()))
        except json_format.ParseError:
            message = "metadata values and data must be base64"
            raise BadRequest(
                f"payload {index}: {message}",
                errors=[FieldError(path=f"payloads[{index}]", message=message)],
            ) from None
    return out


def _json(payload: Payload) -> JsonPayload:
    return JsonPayload.model_validate(json_format.MessageToDict(payload))


_NO_KEYRING = ((404, "Payload encryption is not turned on in this service."),)

ROUTES: list[Route[Any, Any]] = [
    Route("POST", "/codec/decode", codec_decode, CodecPayloads, CodecPayloads, access="any",
          tag="codec", headers=(("X-Namespace", NAMESPACE_HEADER),), errors=_NO_KEYRING,
          session_cookie=True),
    Route("POST", "/codec/encode", codec_encode, CodecPayloads, CodecPayloads, access="any",
          tag="codec", headers=(("X-Namespace", NAMESPACE_HEADER),), errors=_NO_KEYRING,
          session_cookie=True),
]  # fmt: skip
