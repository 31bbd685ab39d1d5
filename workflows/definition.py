"""The definition language: pydantic models that are the one source of truth.

The starter, the CLI and the interpreter all import these models; the published JSON Schema is
generated from them (:func:`definition_json_schema`).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from workflows.durations import Duration

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
STEP_ID_PATTERN = r"^[a-z_][a-z0-9_]{0,63}$"
EXPR_PATTERN = r"^\s*\$\{\{[\s\S]*\}\}\s*$"

DefinitionName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
StepId = Annotated[str, StringConstraints(pattern=STEP_ID_PATTERN)]
Expr = Annotated[str, StringConstraints(pattern=EXPR_PATTERN)]
"""A value that is one ``${{ }}`` expression (its type is known only when it is evaluated)."""

PARAM_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
"""A CEL identifier, as templates read a parameter as ``params.<name>``."""
ParamName = Annotated[str, StringConstraints(pattern=PARAM_NAME_PATTERN)]

TriggerRule = Literal["all_succeeded", "all_done", "any_succeeded", "none_failed"]
Backoff = Literal["exponential", "linear", "fixed", "none"]
OnErrorMode = Literal["fail", "continue", "skip", "manual"]
Execution = Literal["local", "activity", "auto"]

DEFAULT_STEP_TIMEOUT = timedelta(minutes=5)

AUTO_LOCAL_TIMEOUT = timedelta(seconds=5)
"""``execution: auto`` runs a step as a local activity when one attempt may take at most this
long (and it has no ``heartbeat_timeout`` or ``task_queue``). A local attempt holds the run's
workflow task open, so signals and Updates wait for it; 5 s ends before the worker's first
workflow-task heartbeat (at 80 % of the default 10 s task timeout) would be needed."""

LOCAL_RETRY_THRESHOLD = timedelta(seconds=5)
"""A local step's retry waits up to this long in the worker; a longer wait is a durable
Temporal timer (the workflow task completes, recording the results so far)."""

EXECUTION_DESCRIPTION = (
    "How an activity step runs: `activity` (a Temporal activity, through the server), `local` "
    "(a Temporal local activity, in the run's own worker), or `auto` (`local` when one attempt "
    "may take at most 5s and the step has no `heartbeat_timeout` or `task_queue`, else "
    "`activity`). Default: `defaults.execution`, else `activity`. Only for steps that run an "
    "activity (`http`, `webhook`, plugins)."
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Retry(_Model):
    """How a step's attempts are retried (maps onto Temporal's RetryPolicy).

    A field left out is inherited from ``defaults.retry``, then from the built-in defaults
    (3 attempts, exponential from 1s, doubling, capped at 1m).
    """

    max_attempts: int | None = Field(None, ge=1, description="Attempts in all, counting the first.")
    backoff: Backoff | None = None
    initial_interval: Duration | None = Field(None, description="Wait before the first retry.")
    max_interval: Duration | None = Field(None, description="Cap on the wait between attempts.")
    multiplier: float | None = Field(None, ge=1.0, description="Growth per retry (exponential).")
    increment: Duration | None = Field(
        None, description="Added per retry (linear); defaults to initial_interval."
    )
    non_retryable: list[str] | None = Field(None, description="Error types never retried.")


BUILTIN_RETRY = Retry(
    max_attempts=3,
    backoff="exponential",
    initial_interval=timedelta(seconds=1),
    max_interval=timedelta(minutes=1),
    multiplier=2.0,
    non_retryable=[],
)


class Fallback(_Model):
    """Run another step instead when this one has failed for good."""

    fallback: StepId


OnError = OnErrorMode | Fallback


class Defaults(_Model):
    """Settings every step inherits unless it says otherwise."""

    timeout: Duration | None = None
    total_timeout: Duration | None = None
    heartbeat_timeout: Duration | None = None
    retry: Retry | None = None
    on_error: OnError | None = None
    task_queue: str | None = None
    execution: Execution | None = None


class Step(_Model):
    """One node of the DAG."""

    uses: str = Field(description="The step kind: a built-in kind or a plugin's name.")
    with_: dict[str, Any] = Field(
        default_factory=dict, alias="with", description="The kind's inputs; may use ${{ }}."
    )
    needs: list[StepId] = Field(default_factory=list, description="Steps that must finish first.")
    trigger_rule: TriggerRule = "all_succeeded"
    if_: bool | str | None = Field(None, alias="if", description="A condition; false skips.")
    for_each: list[Any] | str | None = Field(
        None, description="Run the step once per item (an expression or a list)."
    )
    concurrency: int | None = Field(None, gt=0, description="Items of for_each running at once.")
    timeout: Duration | None = Field(None, description="One attempt (start-to-close).")
    total_timeout: Duration | None = Field(None, description="All attempts (schedule-to-close).")
    heartbeat_timeout: Duration | None = None
    retry: Retry | None = None
    on_error: OnError | None = None
    task_queue: str | None = Field(None, description="Route to workers with this capability.")
    summary: str | None = Field(None, description="Shown in the Temporal Web UI.")
    secret: str | None = Field(
        None, description="Name of a secret that only the activity resolves."
    )
    execution: Execution | None = Field(None, description=EXECUTION_DESCRIPTION)

    @field_validator("needs", mode="before")
    @classmethod
    def _needs_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


ParamType = Literal["string", "integer", "number", "boolean", "object", "array"]

_PARAM_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def param_type_matches(kind: ParamType, value: Any) -> bool:
    """Whether ``value`` (JSON data) is of a template parameter's ``type``."""
    if isinstance(value, bool) and kind != "boolean":
        return False
    return isinstance(value, _PARAM_TYPES[kind])


class Param(_Model):
    """A parameter of a template, read in its expressions as ``params.<name>``.

    A parameter without a ``default`` must be given when the template is instantiated; a
    ``default`` of null makes it optional whatever its type.
    """

    type: ParamType = "string"
    default: Any = Field(None, description="Used when instantiation does not give the param.")
    description: str | None = None

    @property
    def required(self) -> bool:
        """Whether instantiation must give a value (no ``default`` was written)."""
        return "default" not in self.model_fields_set

    @model_validator(mode="after")
    def _default_has_type(self) -> Param:
        default = self.default
        if not self.required and default is not None and not param_type_matches(self.type, default):
            raise ValueError(f"default must be of type {self.type}, got {self.default!r}")
        return self


class Definition(_Model):
    """A stored DAG definition; with ``params`` it is a template."""

    name: DefinitionName
    description: str | None = None
    input: dict[str, Any] | None = Field(
        None, description="JSON Schema that a run's input must match."
    )
    timeout: Duration | None = Field(None, description="The whole run.")
    max_parallel: int | None = Field(None, gt=0, description="Steps running at once in one run.")
    defaults: Defaults = Field(default_factory=Defaults)
    steps: dict[StepId, Step]
    output: Any = None
    params: dict[ParamName, Param] | None = Field(
        None,
        description="Makes the definition a template: its ${{ params.x }} expressions are "
        "rendered when the starter instantiates it into a new definition.",
    )

    @model_validator(mode="after")
    def _has_steps(self) -> Definition:
        if not self.steps:
            raise ValueError("a definition needs at least one step")
        return self

    def on_error(self, step: Step) -> OnError:
        """The step's effective ``on_error``."""
        return step.on_error or self.defaults.on_error or "fail"

    def retry(self, step: Step) -> Retry:
        """The step's effective retry policy: each field from the step, else the defaults."""
        merged: dict[str, Any] = {}
        for source in (BUILTIN_RETRY, self.defaults.retry, step.retry):
            if source is not None:
                merged.update({k: v for k, v in source if v is not None})
        return Retry.model_validate(merged)

    def timeouts(self, step: Step) -> tuple[timedelta, timedelta | None, timedelta | None]:
        """The step's (attempt, total, heartbeat) timeouts."""
        d = self.defaults
        return (
            step.timeout or d.timeout or DEFAULT_STEP_TIMEOUT,
            step.total_timeout or d.total_timeout,
            step.heartbeat_timeout or d.heartbeat_timeout,
        )

    def task_queue(self, step: Step) -> str | None:
        """The step's task queue, or None for the run's own."""
        return step.task_queue or self.defaults.task_queue

    def runs_local(self, step: Step) -> bool:
        """Whether the step's activity runs as a Temporal local activity.

        ``execution`` comes from the step, else ``defaults``, else ``activity``. ``auto`` is
        local when one attempt may take at most :data:`AUTO_LOCAL_TIMEOUT` and the step has no
        heartbeat timeout and no task queue of its own. Kinds that run no activity never do.
        """
        if step.uses in WORKFLOW_KINDS:
            return False
        mode = step.execution or self.defaults.execution or "activity"
        if mode != "auto":
            return mode == "local"
        attempt, _, heartbeat = self.timeouts(step)
        return attempt <= AUTO_LOCAL_TIMEOUT and heartbeat is None and self.task_queue(step) is None

    def fallback_steps(self) -> set[str]:
        """Ids of steps named as some step's fallback (they run only as fallbacks)."""
        out = set()
        for step in self.steps.values():
            mode = self.on_error(step)
            if isinstance(mode, Fallback):
                out.add(mode.fallback)
        return out


# --- inputs of the built-in kinds -------------------------------------------------------------

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class CircuitBreaker(_Model):
    """A per-host circuit breaker for ``http`` and ``webhook`` steps.

    Each worker process keeps one breaker per host (scheme, host and port). It opens after
    ``failures`` failed requests (5xx, 429, network errors, timeouts; not other 4xx) within
    ``window``; while open, steps to that host fail at once with ``CircuitOpen`` without
    sending anything; after ``open_for`` one probe request goes through and closes it again on
    success, or opens it again on failure.
    """

    failures: int = Field(5, ge=1, description="Failed requests within `window` that open it.")
    window: Duration = Field(
        "30s", validate_default=True, description="How far back failures are counted."
    )
    open_for: Duration = Field(
        "30s",
        validate_default=True,
        description="How long it stays open before one probe request is let through.",
    )


class RateLimit(_Model):
    """A per-host token bucket for ``http`` and ``webhook`` steps (kept by each worker)."""

    per_second: float = Field(gt=0, description="Requests per second to the host, on average.")
    burst: int | None = Field(
        None,
        ge=1,
        description="Requests that may go at once after a quiet spell (default: per_second, "
        "rounded up).",
    )
    max_wait: Duration = Field(
        "10s",
        validate_default=True,
        description="Longest an attempt waits for a token; when the wait would be longer, the "
        "attempt fails with `RateLimited` and is retried when a token is free.",
    )

    @property
    def capacity(self) -> int:
        """The bucket's size: ``burst``, else ``per_second`` rounded up."""
        return self.burst if self.burst is not None else max(1, math.ceil(self.per_second))


BREAKER_DESCRIPTION = (
    "A per-host circuit breaker (see CircuitBreaker); `false` turns off the worker's default "
    "for this step."
)
RATE_LIMIT_DESCRIPTION = (
    "A per-host rate limit (see RateLimit); `false` turns off the worker's default for this step."
)


class HttpWith(_Model):
    """Inputs of ``uses: http``."""

    method: HttpMethod | Expr = "GET"
    url: str
    headers: dict[str, str] | Expr = Field(default_factory=dict)
    query: dict[str, Any] | Expr = Field(default_factory=dict)
    json_: Any = Field(None, alias="json", description="A JSON body.")
    body: str | None = Field(None, description="A raw text body.")
    ok_status: int | list[int] | Expr | None = Field(
        None, description="Statuses that count as success (default: any 2xx)."
    )
    secret_header: str = Field(
        "Authorization", description="Header that carries the step's secret, if it names one."
    )
    secret_prefix: str = Field("Bearer ", description="Text put before the secret's value.")
    follow_redirects: bool | Expr = True
    circuit_breaker: CircuitBreaker | Literal[False] | None = Field(
        None, description=BREAKER_DESCRIPTION
    )
    rate_limit: RateLimit | Literal[False] | None = Field(None, description=RATE_LIMIT_DESCRIPTION)

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        if isinstance(value, str) and "${{" not in value:
            return value.upper()
        return value

    @model_validator(mode="after")
    def _one_body(self) -> HttpWith:
        if self.json_ is not None and self.body is not None:
            raise ValueError("give either json or body, not both")
        return self


class WebhookWith(_Model):
    """Inputs of ``uses: webhook``."""

    url: str
    payload: Any = Field(None, description="The JSON body that is signed and sent.")
    headers: dict[str, str] | Expr = Field(default_factory=dict)
    event: str | None = Field(None, description="Sent as the X-Dagflow-Event header.")
    ok_status: int | list[int] | Expr | None = None
    circuit_breaker: CircuitBreaker | Literal[False] | None = Field(
        None, description=BREAKER_DESCRIPTION
    )
    rate_limit: RateLimit | Literal[False] | None = Field(None, description=RATE_LIMIT_DESCRIPTION)


class TransformWith(_Model):
    """Inputs of ``uses: transform``."""

    value: Any


class ValidateWith(_Model):
    """Inputs of ``uses: validate``."""

    value: Any
    schema_: dict[str, Any] = Field(alias="schema", description="A JSON Schema.")


class WaitWith(_Model):
    """Inputs of ``uses: wait``: exactly one of duration, until, event."""

    duration: Duration | Expr | None = None
    until: str | None = Field(None, description="An RFC 3339 timestamp.")
    event: str | None = Field(None, description="Name of the event (send_event signal).")
    timeout: Duration | Expr | None = Field(None, description="Give up waiting for the event.")

    @model_validator(mode="after")
    def _exactly_one(self) -> WaitWith:
        given = [k for k in ("duration", "until", "event") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of duration, until or event")
        if self.timeout is not None and self.event is None:
            raise ValueError("timeout applies only to event waits")
        return self


class WorkflowWith(_Model):
    """Inputs of ``uses: workflow``: run another stored definition as a child workflow."""

    definition: str = Field(description="name or name@version")
    input: Any = None


BUILTIN_WITH: dict[str, type[_Model]] = {
    "http": HttpWith,
    "webhook": WebhookWith,
    "transform": TransformWith,
    "validate": ValidateWith,
    "wait": WaitWith,
    "workflow": WorkflowWith,
}
WORKFLOW_KINDS = frozenset({"transform", "validate", "wait", "workflow"})
"""Kinds the interpreter evaluates itself (no activity)."""
BUILTIN_KINDS = frozenset(BUILTIN_WITH)


def definition_json_schema() -> dict[str, Any]:
    """The published JSON Schema of a definition, with the inputs of each built-in kind."""
    schema = Definition.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dagflow definition"
    defs = schema.setdefault("$defs", {})
    branches = []
    for kind, model in BUILTIN_WITH.items():
        sub = model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
        defs.update(sub.pop("$defs", {}))
        defs[model.__name__] = sub
        branches.append(
            {
                "if": {"properties": {"uses": {"const": kind}}, "required": ["uses"]},
                "then": {"properties": {"with": {"$ref": f"#/$defs/{model.__name__}"}}},
            }
        )
    defs["Step"]["allOf"] = branches
    return schema
