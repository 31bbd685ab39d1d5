"""Health and readiness."""

from __future__ import annotations

from typing import Literal

from starter.api.common import ResponseModel

Check = Literal["ok", "unavailable"]


class Health(ResponseModel):
    """Whether the process is up, and (for readiness) whether its dependencies answer."""

    status: Check
    database: Check | None = None
    temporal: Check | None = None
