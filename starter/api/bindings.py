"""Changing a binding: its pinned version and its position among the scope's bindings."""

from __future__ import annotations

from pydantic import Field, field_validator

from starter.api.commands import MAX_POSITION
from starter.api.common import RequestModel
from starter.api.definitions import MAX_VERSION


class BindingUpdate(RequestModel):
    """The fields of a binding that change; a field left out keeps its value."""

    version: int | None = Field(
        None,
        ge=1,
        le=MAX_VERSION,
        description="Pin this version; null runs the current version at each command.",
    )
    position: int | None = Field(
        None,
        ge=0,
        le=MAX_POSITION,
        description="Order among the scope's bindings of the type (lowest first); not null.",
    )

    @field_validator("position")
    @classmethod
    def _position_not_null(cls, value: int | None) -> int:
        # runs only when the field is sent: left out, it keeps the binding's position
        if value is None:
            raise ValueError("cannot be null; leave it out to keep the position")
        return value
