"""Bindings of command types to definitions, and commands that start the bound runs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, StringConstraints

from starter.api.common import RequestModel, ResponseModel
from starter.api.definitions import MAX_VERSION, Scope
from starter.api.runs import RunRef
from workflows.definition import DefinitionName
from workflows.types import CommandRunStatus

COMMAND_TYPE_PATTERN = r"^[a-z][a-z0-9_.-]{0,63}$"
"""A command type, e.g. ``order.created``."""
COMMAND_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_:-]{0,119}$"
"""A command id: the run key of the command's runs (``<id>``, or ``<id>.<n>`` for several),
so it has no dot, and fits a run key with the suffix."""
MAX_POSITION = 1_000_000

CommandRunStatusName = Literal[
    "pending", "running", "completed", "failed", "cancelled", "timed_out", "not_run"
]
"""Where one of a command's runs stands (a run that waits or needs attention is running)."""
assert set(get_args(CommandRunStatusName)) == {s.value for s in CommandRunStatus}

CommandType = Annotated[str, StringConstraints(pattern=COMMAND_TYPE_PATTERN)]
CommandId = Annotated[str, StringConstraints(pattern=COMMAND_ID_PATTERN)]


class BindingCreate(RequestModel):
    """Bind a command type to a definition."""

    type: CommandType = Field(description="The command type, e.g. 'order.created'.")
    definition: DefinitionName = Field(description="The definition its commands run.")
    version: int | None = Field(
        None, ge=1, le=MAX_VERSION, description="Pin a version; the current one when not given."
    )
    position: int | None = Field(
        None,
        ge=0,
        le=MAX_POSITION,
        description="Order among the scope's bindings of the type (lowest first); after "
        "the last one when not given.",
    )


class Binding(ResponseModel):
    """A command type bound to a definition."""

    id: int
    scope: Scope = Field(description="'instance' bindings run first; tenants cannot remove them.")
    type: str
    definition: str
    version: int | None = Field(description="The pinned version; None runs the current one.")
    position: int
    created_at: datetime


class CommandSend(RequestModel):
    """A command: its id makes it idempotent."""

    type: CommandType = Field(description="Which bindings run.")
    id: CommandId = Field(
        description="Unique per tenant: a repeat starts nothing and answers the first result."
    )
    payload: Any = Field(None, description="The input of every bound run.")


class CommandRun(RunRef):
    """One run of a command, in the order they run."""

    scope: Scope = Field(description="The scope of the binding that started it.")
    binding: int = Field(description="The binding's id (it may have been deleted since).")
    status: CommandRunStatusName | None = Field(
        None,
        description="Live on GET /v1/commands/{command_id}; in the POST answer, its repeats and "
        "the list, as it was when the command was accepted. A later run is 'pending' until the "
        "one before it completes, and 'not_run' if that one did not. A run that waits or needs "
        "attention is 'running' (its own status is at /v1/runs/{id}). None only for commands "
        "recorded before statuses existed.",
    )
    error: str | None = Field(None, description="Why the run did not complete, when known.")


class Command(ResponseModel):
    """A command in the ledger and the runs it started."""

    id: str
    type: str
    payload_hash: str = Field(description="sha256 of the payload as canonical JSON.")
    created_at: datetime
    created: bool = Field(
        False, description="Whether this request accepted the command (false: a repeat)."
    )
    workflow_id: str | None = Field(
        None,
        description="The DagCommand run '<tenant>/command:<id>' that runs several bound runs "
        "one after another; None when the type has one binding (its run starts directly).",
    )
    runs: list[CommandRun] = Field(description="Instance-bound runs first, in the order they run.")
