"""Cursor pagination: a cursor is the opaque, URL-safe encoding of the last row's sort key."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import Field

from starter.api.common import DEFAULT_PAGE, MAX_PAGE, RequestModel
from starter.errors import BadRequest, FieldError

Row = TypeVar("Row")


class PageQuery(RequestModel):
    """``?limit=&cursor=`` of every list route."""

    limit: int = Field(DEFAULT_PAGE, ge=1, le=MAX_PAGE, description="Items per page.")
    cursor: str | None = Field(None, description="next_cursor of the previous page.")


def encode_cursor(*key: str | int) -> str:
    """The cursor after a row whose sort key is ``key``."""
    text = json.dumps(list(key), separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, *types: type) -> tuple[Any, ...] | None:
    """The sort key in a cursor, checked against the expected ``types``.

    Raises:
        BadRequest: If the cursor was not made by this route.
    """
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError):
        key = None
    if (
        not isinstance(key, list)
        or len(key) != len(types)
        or not all(type(v) is t for v, t in zip(key, types, strict=True))
    ):
        message = "not a cursor this list gave out"
        raise BadRequest(message, errors=[FieldError(path="query.cursor", message=message)])
    return tuple(key)


def one_page(
    rows: Sequence[Row], limit: int, key: Callable[[Row], tuple[str | int, ...]]
) -> tuple[list[Row], str | None]:
    """Split ``limit + 1`` fetched rows into the page and the cursor of the next one."""
    if len(rows) <= limit:
        return list(rows), None
    page = list(rows[:limit])
    return page, encode_cursor(*key(page[-1]))
