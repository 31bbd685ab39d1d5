"""The codec server's bodies: payloads in Temporal's proto JSON form, as the Web UI sends them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class JsonPayload(BaseModel):
    """One payload: metadata values and data in base64 (proto JSON of ``temporal.api.common.v1.
    Payload``)."""

    model_config = ConfigDict(extra="ignore")

    metadata: dict[str, str] = Field(default_factory=dict, description="Values in base64.")
    data: str = Field("", description="The payload's bytes in base64.")


class CodecPayloads(BaseModel):
    """Payloads to encode or decode, answered in the same order and form."""

    model_config = ConfigDict(extra="ignore")

    payloads: list[JsonPayload]
