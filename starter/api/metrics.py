"""The metrics summary: runs per definition over a window, from Temporal's visibility."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field, field_validator

from starter.api.common import RequestModel, ResponseModel
from workflows.durations import parse_duration

MAX_WINDOW = timedelta(days=90)
"""The longest window a summary covers (runs older than the namespace's retention are gone
anyway)."""


class SummaryQuery(RequestModel):
    """The window of a summary."""

    window: str = Field(
        "24h",
        description="How far back to look, e.g. 1h, 24h, 7d (at most 90d): closed runs count "
        "if they closed within it.",
        examples=["24h"],
    )

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        span = parse_duration(value)
        if span > MAX_WINDOW:
            raise ValueError(f"the window is at most 90d, got {value!r}")
        return value

    def span(self) -> timedelta:
        """The window as a timedelta."""
        return parse_duration(self.window)


class DefinitionSummary(ResponseModel):
    """One definition's runs: closed within the window by how they ended, and open now."""

    definition: str
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    timed_out: int = 0
    open: int = Field(0, description="Runs not closed yet, whenever they started.")
    success_rate: float | None = Field(
        None, description="completed / closed runs in the window; null when none closed."
    )
    p50_seconds: float | None = Field(
        None, description="Median duration (start to close) of the runs closed in the window."
    )
    p95_seconds: float | None = Field(
        None, description="95th percentile duration (nearest rank) of the closed runs."
    )


class MetricsSummary(ResponseModel):
    """The caller's runs per definition over a window."""

    window: str
    since: datetime = Field(description="The start of the window (now - window).")
    definitions: list[DefinitionSummary] = Field(description="By definition name.")
    truncated: bool = Field(
        False,
        description="True when more runs closed in the window than one summary reads "
        "(10,000): the counts are of the newest-read runs only.",
    )
