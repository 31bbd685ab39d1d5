"""Settings shared by every dagflow process: flags, then ``DAGFLOW_*`` variables, then defaults."""

from __future__ import annotations

import ipaddress
import json
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from worker.codec import Keyring
from worker.payloads import DEFAULT_THRESHOLD
from workflows.definition import CircuitBreaker, RateLimit
from workflows.types import DEFAULT_TASK_QUEUE


class Settings(BaseSettings):
    """Where Temporal is and how the worker behaves; every field is also a CLI flag."""

    model_config = SettingsConfigDict(
        env_prefix="DAGFLOW_", extra="ignore", hide_input_in_errors=True
    )

    temporal_address: str = Field("localhost:7233", description="Temporal frontend host:port.")
    namespace: str = "default"
    task_queue: str = DEFAULT_TASK_QUEUE
    allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Networks (CIDR) HTTP steps may reach despite the private-address guard.",
    )
    secrets_file: str | None = Field(None, description="YAML or JSON file of step secrets.")
    database_url: str | None = None
    max_concurrent_activities: int = Field(200, gt=0)
    max_cached_workflows: int = Field(
        1000,
        ge=0,
        description="Runs a worker keeps in memory between workflow tasks (Temporal's sticky "
        "cache); others are replayed from history when they next wake.",
    )
    shutdown_grace: float = Field(10.0, ge=0, description="Seconds running activities get.")
    http_circuit_breaker: Annotated[CircuitBreaker | None, NoDecode] = Field(
        None,
        description="Per-host circuit breaker of http and webhook steps that set none, as JSON "
        '(e.g. {"failures": 5, "window": "30s", "open_for": "30s"}); off when unset.',
    )
    http_rate_limit: Annotated[RateLimit | None, NoDecode] = Field(
        None,
        description="Per-host rate limit of http and webhook steps that set none, as JSON "
        '(e.g. {"per_second": 10, "burst": 20}); off when unset.',
    )
    encryption_keys: SecretStr | None = Field(
        None,
        description="Payload encryption keys, id:base64key comma-separated, the first current "
        "(environment only; worker.client.connect reads it).",
    )
    payload_store: str | None = Field(
        None,
        description="Directory where payloads of at least payload_store_threshold bytes are "
        "kept, history holding a reference; every process must share it (environment only; "
        "worker.client.connect reads it). Off when unset.",
    )
    payload_store_threshold: int = Field(
        DEFAULT_THRESHOLD, ge=0, description="Size in bytes from which a payload is stored."
    )
    metrics_address: str | None = Field(
        None, description="host:port where a worker serves Prometheus metrics (off when unset)."
    )

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    def keyring(self) -> Keyring | None:
        """The payload encryption keyring, or None when encryption is off."""
        text = self.encryption_keys.get_secret_value().strip() if self.encryption_keys else ""
        return Keyring.parse(text) if text else None

    @field_validator("encryption_keys")
    @classmethod
    def _keyring(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip():
            Keyring.parse(value.get_secret_value())
        return value

    @field_validator("http_circuit_breaker", "http_rate_limit", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text in ("", "off"):
                return None
            try:
                return json.loads(text)
            except ValueError:
                raise ValueError(f"not JSON: {text!r}") from None
        return value

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"not a network: {cidr!r} (use CIDR, e.g. 10.0.0.0/8)") from None
        return value
