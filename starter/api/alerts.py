"""Alert rules and the deliveries of their alerts (``/v1/alerts``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field, field_validator
from yarl import URL

from starter.api.common import RequestModel, ResponseModel
from workflows.definition import NAME_PATTERN
from workflows.durations import parse_duration

AlertKind = Literal["run_failed", "step_parked", "failure_rate"]
DeliveryStatus = Literal["pending", "delivered", "failed"]
SECRET_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
DEFAULT_SECRET = "alerts"
MAX_WINDOW = timedelta(days=7)
MIN_WINDOW = timedelta(seconds=1)
_RATE_FIELDS = ("threshold", "window", "min_runs")


def _check_url(value: str) -> str:
    try:
        url = URL(value)
    except ValueError:
        raise ValueError("not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an absolute http(s) URL")
    return value


def _check_window(value: str | None) -> str | None:
    if value is None:
        return None
    span = parse_duration(value)
    if not MIN_WINDOW <= span <= MAX_WINDOW:
        raise ValueError(f"must be between 1s and 7d, got {value!r}")
    return value


class AlertRuleCreate(RequestModel):
    """A new alert rule. ``threshold``, ``window`` and ``min_runs`` belong to ``failure_rate``
    rules (which need the first two) and to no other kind."""

    kind: AlertKind = Field(
        description="run_failed: a run failed or timed out; step_parked: a step needs an "
        "operator (on_error: manual); failure_rate: the share of failed runs among the runs "
        "that closed within the window reached the threshold."
    )
    url: str = Field(description="Where alerts are POSTed (http or https).", max_length=2048)
    definition: str | None = Field(
        None, pattern=NAME_PATTERN, description="Only runs of this definition (default: all)."
    )
    secret: str = Field(
        DEFAULT_SECRET,
        pattern=SECRET_PATTERN,
        description="The name of the signing secret, resolved for the tenant from the "
        "starter's alert secrets file (DAGFLOW_ALERT_SECRETS_FILE); the value is never stored "
        "or returned.",
    )
    threshold: float | None = Field(
        None, gt=0, le=100, description="failure_rate: the percentage (0-100] that fires."
    )
    window: str | None = Field(
        None, description="failure_rate: how far back closed runs count, e.g. 15m, 1h (<= 7d)."
    )
    min_runs: int | None = Field(
        None, ge=1, le=100_000, description="failure_rate: closed runs needed (default 1)."
    )
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        return _check_window(value)

    def kind_errors(self) -> list[tuple[str, str]]:
        """``(field, message)`` for each field the kind needs and lacks or does not take."""
        if self.kind == "failure_rate":
            return [(f, "a failure_rate rule needs it") for f in ("threshold", "window")
                    if getattr(self, f) is None]  # fmt: skip
        return [(f, "only failure_rate rules take it") for f in _RATE_FIELDS
                if getattr(self, f) is not None]  # fmt: skip


class AlertRuleUpdate(RequestModel):
    """The fields of a rule that change; a field left out keeps its value."""

    url: str | None = Field(None, max_length=2048, description="Where alerts are POSTed.")
    secret: str | None = Field(None, pattern=SECRET_PATTERN, description="The secret's name.")
    enabled: bool | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("cannot be null; leave it out to keep the URL")
        return _check_url(value)

    @field_validator("secret", "enabled")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; leave it out to keep it")
        return value


class AlertRule(ResponseModel):
    """An alert rule (its secret by name only)."""

    id: int
    kind: AlertKind
    url: str
    definition: str | None = None
    secret: str
    threshold: float | None = None
    window: str | None = None
    min_runs: int | None = None
    enabled: bool
    created_at: datetime


class AlertDelivery(ResponseModel):
    """One alert and how its delivery went."""

    id: int
    rule: int
    event: str = Field(description="What the alert is about, unique per rule.")
    idempotency_key: str = Field(description="Sent as Idempotency-Key on every attempt.")
    status: DeliveryStatus
    attempts: int
    last_status: int | None = Field(None, description="The receiver's last HTTP status.")
    last_error: str | None = None
    payload: dict[str, Any] = Field(description="The JSON body that was POSTed.")
    created_at: datetime
    finished_at: datetime | None = None
