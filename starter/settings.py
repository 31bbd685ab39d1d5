"""Settings of ``dagflow serve``: flags, then ``DAGFLOW_*`` variables, then laptop defaults."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from worker.settings import Settings

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///.dagflow/dagflow.db"


class ServiceSettings(Settings):
    """The starter service's settings: the worker's (Temporal address, namespace, task queue)
    plus where to listen, the database, the bootstrap instance key and the limits."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    database_url: str = Field(DEFAULT_DATABASE_URL, description="SQLAlchemy async URL.")
    instance_key: SecretStr | None = Field(
        None, description="A bootstrap instance admin key (compared by hash, never stored)."
    )
    rate_limit: float = Field(50.0, gt=0, description="Requests per second per tenant.")
    rate_burst: int = Field(100, ge=1, description="Requests a tenant may make at once.")
    key_cache_seconds: float = Field(
        5.0,
        ge=0,
        description="Seconds a looked-up API key is trusted without reading the database again "
        "(a revocation through another service process takes up to this long); 0: off.",
    )
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Largest request body.")
    temporal_timeout: float = Field(
        2.0, gt=0, description="Seconds to wait for Temporal before answering 503."
    )
    codec_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins (e.g. the Web UI's http://localhost:8233) whose browsers may call "
        "the codec server's /codec/decode and /codec/encode.",
    )
    codec_session_hours: float = Field(
        8.0,
        gt=0,
        le=720,
        description="How long a codec session lasts (signed in at /codec/session, so that a "
        "browser's Web UI may use the codec server).",
    )
    alerts: bool = Field(
        True, description="Run the alert notifier (evaluates tenants' alert rules) in this process."
    )
    alerts_interval: float = Field(
        10.0, gt=0, description="Seconds between two evaluations of the alert rules."
    )
    alert_attempts: int = Field(
        5, ge=1, le=20, description="Delivery attempts of one alert (network errors, 429, 5xx)."
    )
    alert_backoff: float = Field(
        1.0, gt=0, description="Seconds before the second delivery attempt; doubles after."
    )
    alert_secrets_file: str | None = Field(
        None,
        description="YAML or JSON file of alert signing secrets, {tenant: {name: value}} with "
        '"*" for every tenant; alert rules name one.',
    )

    @field_validator("codec_cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            value = [str(origin).rstrip("/") for origin in value]
        return value
