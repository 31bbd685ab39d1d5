"""Runs of stored definitions: starting, listing, inspecting and steering them."""

from __future__ import annotations

from pydantic import Field

from starter.api.common import ResponseModel

RUN_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
"""A run key: the last part of the workflow id ``<tenant>/<definition>/<key>``."""


class RunRef(ResponseModel):
    """Where a run is: its address under ``/v1/runs/`` and its Temporal ids."""

    id: str = Field(description="'<definition>/<key>': the run's address under /v1/runs/.")
    definition: str
    key: str = Field(description="The run key (the idempotency key, or a random one).")
    version: int = Field(description="The definition version the run is pinned to.")
    workflow_id: str = Field(description="Temporal's workflow id: '<tenant>/<definition>/<key>'.")
    run_id: str | None = Field(None, description="Temporal's run id of its first execution.")
    created: bool = Field(False, description="Whether this request started it.")
