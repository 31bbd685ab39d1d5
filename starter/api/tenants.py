"""Tenants and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from starter.api.common import RequestModel, ResponseModel

TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
TenantId = Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class TenantCreate(RequestModel):
    """A new tenant."""

    id: TenantId = Field(description="Lower-case letters, digits and dashes; in workflow ids.")
    name: Label | None = Field(None, description="For people; the id when not given.")


class Tenant(ResponseModel):
    """A tenant."""

    id: str
    name: str
    created_at: datetime


class KeyCreate(RequestModel):
    """A new API key."""

    name: Label = Field(description="What the key is for; recorded as the author of changes.")


class Key(ResponseModel):
    """An API key as listed: never the key itself."""

    id: str
    name: str
    prefix: str = Field(description="Identifies the key: dfk_<prefix>_...")
    tenant: str | None = Field(description="None for an instance key.")
    created_at: datetime
    revoked_at: datetime | None = None


class NewKey(Key):
    """A key just created: ``key`` is shown this once and never again."""

    key: str = Field(description="Send as 'Authorization: Bearer <key>'.")
