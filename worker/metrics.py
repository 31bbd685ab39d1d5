"""The worker's metrics: the Temporal SDK's Prometheus endpoint, and dagflow's step metrics
recorded on the same meter (so one scrape gets both).

The runtime must exist before the client connects: :func:`prometheus_runtime` makes it, and
:func:`worker.client.connect` takes it. Step activities are measured by
:class:`worker.interceptors.StepAttemptInterceptor` with :func:`record_attempt`; parks and their
resolutions are counted inside the workflow with ``workflow.metric_meter()``, which the SDK
skips during replay (names in :mod:`workflows.metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from temporalio import activity
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

STEP_ATTEMPTS = "dagflow_step_attempts"
"""Counter (``_total`` on the wire): step activity attempts by kind, tenant and outcome."""
STEP_DURATION = "dagflow_step_duration_seconds"
"""Histogram: how long one step activity attempt ran, by kind and outcome."""
DURATION_BUCKETS: Sequence[float] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
)  # fmt: skip
"""Bucket bounds (seconds) of the step duration histogram: from fast HTTP calls to long ones."""

Outcome = Literal["succeeded", "failed", "cancelled"]


class MetricsAddressError(Exception):
    """The metrics address is not ``host:port`` or cannot be bound."""


def prometheus_runtime(address: str) -> Runtime:
    """A Temporal runtime that serves its metrics (the SDK's and dagflow's) for Prometheus.

    Args:
        address: ``host:port`` to serve ``/metrics`` on.

    Raises:
        MetricsAddressError: If the address is malformed or cannot be bound.
    """
    buckets: Mapping[str, Sequence[float]] = {STEP_DURATION: DURATION_BUCKETS}
    config = PrometheusConfig(
        bind_address=address,
        counters_total_suffix=True,
        durations_as_seconds=True,
        histogram_bucket_overrides=buckets,
    )
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=config))
    except ValueError as e:
        raise MetricsAddressError(f"cannot serve metrics on {address!r}: {e}") from None


def record_attempt(kind: str, tenant: str, outcome: Outcome, seconds: float) -> None:
    """Count one step activity attempt and its duration (call inside the activity's context).

    The activity's meter adds ``namespace``, ``task_queue`` and ``activity_type``.
    """
    meter = activity.metric_meter()
    meter.create_counter(STEP_ATTEMPTS, "Step activity attempts by kind, tenant and outcome.").add(
        1, {"kind": kind, "tenant": tenant, "outcome": outcome}
    )
    meter.create_histogram_float(
        STEP_DURATION, "Seconds one step activity attempt ran, by kind and outcome.", "s"
    ).record(seconds, {"kind": kind, "outcome": outcome})
