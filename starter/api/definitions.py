"""Definitions, their versions, validation and templates."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from starter.api.common import RequestModel, ResponseModel
from starter.errors import FieldError
from workflows.definition import DefinitionName

Scope = Literal["tenant", "instance"]
MAX_VERSION = 2**31 - 1
"""Versions are 32-bit integers in the database."""


class DefinitionSummary(ResponseModel):
    """A definition as listed."""

    name: str
    scope: Scope = Field(description="'instance' definitions are shared, read-only for tenants.")
    description: str | None = None
    current_version: int
    active: bool
    is_template: bool
    created_at: datetime
    updated_at: datetime


class VersionInfo(ResponseModel):
    """One immutable version."""

    version: int
    content_hash: str = Field(description="sha256 of the content as canonical JSON.")
    author: str = Field(description="Name of the key that wrote it.")
    author_key: str = Field(description="Prefix of the key that wrote it.")
    created_at: datetime


class Version(VersionInfo):
    """One version with its content."""

    content: dict[str, Any]


class DefinitionDetail(DefinitionSummary):
    """A definition with its current version."""

    version: Version
    created: bool = Field(False, description="Whether this request added the version.")


class Rollback(RequestModel):
    """Which version becomes current."""

    version: int = Field(ge=1, le=MAX_VERSION)


class Validation(ResponseModel):
    """The outcome of validating a definition without storing it."""

    ok: bool
    problems: list[FieldError]


class Instantiate(RequestModel):
    """Render a template into a new definition of the caller's."""

    name: DefinitionName = Field(description="Name of the new definition.")
    params: dict[str, Any] = Field(default_factory=dict, description="Values of the params.")
