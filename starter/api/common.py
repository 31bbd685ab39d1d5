"""Bases of the request and response models."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

MAX_PAGE = 200
DEFAULT_PAGE = 50


class RequestModel(BaseModel):
    """A request body: unknown fields are errors, so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ResponseModel(BaseModel):
    """An answer: fields a newer service adds are ignored by older clients."""

    model_config = ConfigDict(extra="ignore")


class Page(ResponseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[T]
    next_cursor: str | None = Field(None, description="None on the last page.")
