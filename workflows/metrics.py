"""Metrics the interpreter records about parked steps, on ``workflow.metric_meter()``: the
SDK's replay-safe meter, which records nothing while a workflow task replays history, so a
park is counted once however often its run is replayed. They come out of the worker's
Prometheus endpoint (``DAGFLOW_METRICS_ADDRESS``) with ``_total`` appended to their names."""

from __future__ import annotations

from typing import Literal

from temporalio import workflow

STEPS_PARKED = "dagflow_steps_parked"
"""Counter: steps parked as needs_attention, by tenant, definition and kind."""
STEPS_RESOLVED = "dagflow_steps_resolved"
"""Counter: parked steps resolved by an operator, by tenant, definition, kind and action
(retry, complete, skip, fail). Parked now = parked - resolved, less runs cancelled or
terminated while parked."""

Resolution = Literal["retry", "complete", "skip", "fail"]


def step_parked(tenant: str, definition: str, kind: str) -> None:
    """Count a step that parks (call from workflow code)."""
    workflow.metric_meter().create_counter(
        STEPS_PARKED, "Steps parked as needs_attention, by tenant, definition and kind."
    ).add(1, {"tenant": tenant, "definition": definition, "kind": kind})


def step_resolved(tenant: str, definition: str, kind: str, action: Resolution) -> None:
    """Count a parked step an operator resolved (call from workflow code)."""
    workflow.metric_meter().create_counter(
        STEPS_RESOLVED, "Parked steps resolved by an operator, by action."
    ).add(1, {"tenant": tenant, "definition": definition, "kind": kind, "action": action})
