"""``DagRun``: the one generic workflow that walks a stored definition.

Steps with side effects run as activities (or child workflows); ``transform``, ``validate`` and
``wait`` are evaluated here. The run keeps every step's record (status, attempts, times, error,
output), answers the ``progress`` query, takes the recovery signals and Updates, and continues
as new before its history grows too long. Big ``for_each`` lists run in ``DagForEachBatch``
child workflows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
    RetryState,
    TimeoutType,
)
from temporalio.exceptions import TimeoutError as StepTimeoutError

with workflow.unsafe.imports_passed_through():
    import jsonschema
    import pydantic
    from referencing import Registry

    from workflows import expressions, metrics
    from workflows.definition import (
        LOCAL_RETRY_THRESHOLD,
        WORKFLOW_KINDS,
        Definition,
        Fallback,
        Step,
        TransformWith,
        ValidateWith,
        WaitWith,
        WorkflowWith,
    )
    from workflows.durations import format_duration, parse_duration
    from workflows.inputs import with_defaults
    from workflows.scheduling import (
        TERMINAL,
        Readiness,
        idempotency_key,
        retry_policy,
        step_key,
        tenant_priority,
        trigger_met,
    )
    from workflows.search_attributes import DAG_STATUS, TENANT_ID, run_attributes
    from workflows.types import (
        DAG_STATUS_VALUES,
        FOR_EACH_BATCH_WORKFLOW_TYPE,
        NOT_PARKED,
        UNKNOWN_STEP,
        WORKFLOW_TYPE,
        Ack,
        CompleteStep,
        DagRunInput,
        FailRun,
        ForEachBatchInput,
        ForEachBatchResult,
        LinearBackoff,
        Progress,
        RetryStep,
        RunSnapshot,
        RunState,
        RunStatus,
        SendEvent,
        SkipStep,
        StepInput,
        StepProgress,
        StepRecord,
        StepResult,
        StepStatus,
    )

DETAILS_ROWS = 40
"""Most step rows shown in the Web UI's current details."""
FOR_EACH_WINDOW = 50
"""Most items of a for_each without ``concurrency`` that one workflow (the run, or one of its
batches) runs at once. Scheduling all 250 items of a batch in one workflow task took over the
SDK's 2-second deadlock limit on a loaded 2-core machine, and a batch the worker then could
not evict never ran again."""
WINDOW_PATCH = "for-each-window"
"""``workflow.patched`` id: runs recorded before the window schedule every item at once."""

LOCAL_TASK_STEPS = 100
LOCAL_TASK_SPAN = timedelta(seconds=1)
"""Local steps that may end in one workflow task, and how long (workflow time) it may keep
starting them, before the next local step runs as a regular activity instead: scheduling it
lets the task complete, which writes the markers of the local steps before it to the history
(and lets queries, signals and Updates in)."""
_STATUS_ORDER = tuple(StepStatus)


class StepFailure(Exception):
    """A step (or one item of it) failed for good: retries spent, or retrying cannot help."""

    def __init__(self, message: str, attempts: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = attempts


class _Suspended(Exception):
    """The run is draining for continue-as-new: the unit was not started."""


@dataclass(frozen=True)
class _Fatal:
    """Why the run is ending early: status, message, the step to blame, the error type."""

    status: RunStatus
    message: str
    type: str
    step: str | None = None


@dataclass
class _Decision:
    action: Literal["retry", "complete", "skip"]
    with_: dict[str, Any] | None = None
    output: Any = None


def _describe(error: BaseException) -> str:
    """A one-line reason for an activity or child workflow failure."""
    cause = error.cause if isinstance(error, ActivityError | ChildWorkflowError) else error
    if isinstance(cause, ApplicationError):
        return f"{cause.type}: {cause.message}" if cause.type else cause.message
    if isinstance(cause, StepTimeoutError):
        kind = cause.type.name.lower() if cause.type else "timeout"
        return f"timed out ({kind})"
    if cause is not None and str(cause):
        return str(cause)
    return str(error) or type(error).__name__


def _attempts(error: FailureError, max_attempts: int, local_timeouts_retry: bool = False) -> int:
    """How many attempts a failed activity made, as far as the workflow can tell.

    Args:
        error: The activity's failure. A local activity's failure may arrive as its cause
            itself (an ``ApplicationError``, a ``TimeoutError``), not wrapped in an
            ``ActivityError``, and differently on replay, so both are read alike.
        max_attempts: The retry policy's maximum.
        local_timeouts_retry: The step is local with no total timeout, so an attempt that
            timed out was retried until the attempts ran out.
    """
    cause = error.cause if isinstance(error, ActivityError) else error
    if isinstance(cause, ApplicationError) and cause.details:
        last = cause.details[-1]
        if isinstance(last, dict) and isinstance(last.get("attempt"), int):
            return int(last["attempt"])
    spent = RetryState.MAXIMUM_ATTEMPTS_REACHED
    if isinstance(error, ActivityError) and error.retry_state == spent:
        return max_attempts
    if (
        local_timeouts_retry
        and isinstance(cause, StepTimeoutError)
        and cause.type == TimeoutType.START_TO_CLOSE
    ):
        return max_attempts
    return 1


def _as_fallback(mode: object) -> Fallback | None:
    return mode if isinstance(mode, Fallback) else None


class _Executor:
    """Runs one unit of a step (the step itself or one item of its for_each)."""

    ctx: DagRunInput
    workflow_id: str
    _inflight: int
    _draining: bool
    _policies: dict[str, tuple[RetryPolicy, LinearBackoff | None]]
    _task: tuple[int, datetime, int] = (0, datetime.min, 0)
    """The workflow task as local steps see it: the history length that marks it, the
    workflow time it was first seen, and the local activities that ended in it (their markers
    join the history when it completes)."""

    def _notify(self) -> None:
        """Wake the run's supervisor (a no-op outside DagRun)."""

    def _current_task(self) -> tuple[int, datetime, int]:
        length = workflow.info().get_current_history_length()
        if self._task[0] != length:
            self._task = (length, workflow.now(), 0)
        return self._task

    def _local_done(self) -> None:
        length, began, ended = self._current_task()
        self._task = (length, began, ended + 1)

    def _room_for_local(self) -> bool:
        """Whether the current workflow task may start another local step."""
        _, began, ended = self._current_task()
        return ended < LOCAL_TASK_STEPS and workflow.now() - began < LOCAL_TASK_SPAN

    def _policy(self, sid: str, step: Step) -> tuple[RetryPolicy, LinearBackoff | None]:
        """The step's Temporal retry policy, built once per step (for_each items share it);
        steps without a ``retry`` of their own share the run's default one."""
        key = sid if step.retry is not None else ""
        if key not in self._policies:
            self._policies[key] = retry_policy(self.ctx.definition.retry(step))
        return self._policies[key]

    def _base_scope(self) -> dict[str, Any]:
        return {
            "input": self.ctx.input,
            "run": {
                "id": self.workflow_id,
                "tenant": self.ctx.tenant,
                "definition": self.ctx.definition.name,
                "version": self.ctx.version,
            },
        }

    async def _run_unit(
        self,
        sid: str,
        step: Step,
        index: int | None,
        item: Any,
        series: int,
        overrides: dict[str, Any] | None,
        scope: dict[str, Any],
        record: StepRecord | None = None,
    ) -> tuple[Any, int]:
        """Render the step's inputs and run it once (with its retries); return output, attempts."""
        key = step_key(sid, index)
        if index is not None:
            scope = {**scope, "item": item, "index": index}
        raw = {**step.with_, **overrides} if overrides else step.with_
        try:
            with_ = expressions.render(raw, scope)
        except expressions.ExpressionError as e:
            raise StepFailure(f"expression `{e.expression}` failed: {e.reason}") from None
        kind = step.uses
        try:
            if kind == "transform":
                return TransformWith.model_validate(with_).value, 1
            if kind == "validate":
                return _validate(ValidateWith.model_validate(with_)), 1
            if kind == "wait":
                return await self._wait(sid, WaitWith.model_validate(with_), record), 1
            if self._draining:
                raise _Suspended()
            if kind == "workflow":
                return await self._child(sid, step, key, WorkflowWith.model_validate(with_), series)
            return await self._activity(sid, step, key, index, with_, series)
        except pydantic.ValidationError as e:
            raise StepFailure(f"bad input: {_pydantic_reason(e)}") from None

    async def _activity(
        self,
        sid: str,
        step: Step,
        key: str,
        index: int | None,
        with_: dict[str, Any],
        series: int,
    ) -> tuple[Any, int]:
        definition = self.ctx.definition
        policy, linear = self._policy(sid, step)
        attempt_timeout, total_timeout, heartbeat = definition.timeouts(step)
        arg = StepInput(
            tenant=self.ctx.tenant,
            workflow_id=self.workflow_id,
            definition=definition.name,
            step=sid,
            index=index,
            key=key,
            kind=step.uses,
            with_=with_,
            secret=step.secret,
            idempotency_key=idempotency_key(self.workflow_id, key, series),
            linear_backoff=linear,
        )
        activity_id = key if series == 1 else f"{key}#{series}"
        summary = f"{key}: {step.summary}" if step.summary else key
        local = definition.runs_local(step) and self._room_for_local()
        self._inflight += 1
        try:
            if local:
                result = await workflow.execute_local_activity(
                    step.uses,
                    arg,
                    activity_id=activity_id,
                    summary=summary,
                    start_to_close_timeout=attempt_timeout,
                    schedule_to_close_timeout=total_timeout,
                    retry_policy=policy,
                    local_retry_threshold=LOCAL_RETRY_THRESHOLD,
                    result_type=StepResult,
                )
            else:
                result = await workflow.execute_activity(
                    step.uses,
                    arg,
                    activity_id=activity_id,
                    summary=summary,
                    task_queue=definition.task_queue(step),
                    start_to_close_timeout=attempt_timeout,
                    schedule_to_close_timeout=total_timeout,
                    heartbeat_timeout=heartbeat,
                    retry_policy=policy,
                    result_type=StepResult,
                    priority=tenant_priority(self.ctx.tenant),
                )
        except FailureError as e:
            # a local activity's failure can come unwrapped (and differently on replay)
            if not (local or isinstance(e, ActivityError)):
                raise
            spent = _attempts(e, policy.maximum_attempts, local and total_timeout is None)
            raise StepFailure(_describe(e), spent) from None
        finally:
            self._inflight -= 1
            if local:
                self._local_done()
            self._notify()
        return result.output, result.attempt

    async def _child(
        self, sid: str, step: Step, key: str, with_: WorkflowWith, series: int
    ) -> tuple[Any, int]:
        ref = with_.definition
        child = self.ctx.library.get(ref)
        if child is None:
            known = ", ".join(sorted(self.ctx.library)) or "none"
            raise StepFailure(f"definition '{ref}' is not available to this run (known: {known})")
        version = int(ref.split("@", 1)[1]) if "@" in ref else 0
        if child.input is not None:
            # as a run started by the starter or the CLI: checked before it starts (a missing
            # input is checked as {}), so a bad input fails this step, not a child run
            problems = _violations(child.input, with_.input if with_.input is not None else {})
            if problems:
                listed = "; ".join(problems)
                raise StepFailure(
                    f"with.input breaks the input schema of '{ref}' "
                    f"({len(problems)} problem{'s' if len(problems) != 1 else ''}): {listed}"
                )
        arg = DagRunInput(
            definition=child,
            input=with_.input,
            tenant=self.ctx.tenant,
            version=version,
            command=self.ctx.command,
            library=self.ctx.library,
            history_limit=self.ctx.history_limit,
            batch_size=self.ctx.batch_size,
            batches_at_once=self.ctx.batches_at_once,
        )
        self._inflight += 1
        try:
            output = await workflow.execute_child_workflow(
                WORKFLOW_TYPE,
                arg,
                id=f"{self.workflow_id}/{key}" + (f"#{series}" if series > 1 else ""),
                task_queue=self.ctx.definition.task_queue(step),
                execution_timeout=step.timeout,
                search_attributes=run_attributes(
                    self.ctx.tenant, child.name, version, self.ctx.command
                ),
                static_summary=f"{self.ctx.tenant} · {child.name} v{version} · step {key} of "
                f"{self.ctx.definition.name}",
                priority=tenant_priority(self.ctx.tenant),
            )
        except ChildWorkflowError as e:
            raise StepFailure(f"child run failed: {_describe(e)}") from None
        finally:
            self._inflight -= 1
            self._notify()
        return output, 1

    async def _wait(self, sid: str, with_: WaitWith, record: StepRecord | None) -> Any:
        raise StepFailure("wait steps are not supported here")

    def _window(self, concurrency: int | None, count: int) -> int | None:
        """How many of ``count`` items run at once here: the step's ``concurrency``, else at
        most FOR_EACH_WINDOW (in runs that started with the window; a replay of an older
        history keeps running every item at once)."""
        if concurrency is None and count > FOR_EACH_WINDOW and workflow.patched(WINDOW_PATCH):
            return FOR_EACH_WINDOW
        return concurrency

    async def _run_items(
        self,
        sid: str,
        step: Step,
        items: list[tuple[int, Any]],
        concurrency: int | None,
        series: int,
        overrides: dict[str, Any] | None,
        scope: dict[str, Any],
        fail_fast: bool,
        on_output: Callable[[int, Any], None],
    ) -> tuple[dict[int, str], int]:
        """Run for_each items, at most ``concurrency`` at once; return failures, most attempts."""
        limit = asyncio.Semaphore(concurrency) if concurrency else None
        failed: dict[int, str] = {}
        most = 0

        async def one(index: int, item: Any) -> None:
            nonlocal most
            if failed and fail_fast:
                return
            if limit is not None:
                await limit.acquire()
            try:
                if failed and fail_fast:
                    return
                output, attempts = await self._run_unit(
                    sid, step, index, item, series, overrides, scope
                )
                most = max(most, attempts)
                on_output(index, output)
            except StepFailure as f:
                most = max(most, f.attempts)
                failed[index] = f.message
            finally:
                if limit is not None:
                    limit.release()

        results = await asyncio.gather(*(one(i, item) for i, item in items), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return failed, most


def _pydantic_reason(error: pydantic.ValidationError) -> str:
    parts = []
    for e in error.errors():
        path = ".".join(str(p) for p in e["loc"])
        parts.append(f"with.{path}: {e['msg']}" if path else e["msg"])
    return "; ".join(parts)


def _validate(with_: ValidateWith) -> Any:
    """The ``validate`` kind: every violation of the schema, listed."""
    problems = _violations(with_.schema_, with_.value)
    if problems:
        listed = "; ".join(problems)
        raise StepFailure(f"value does not match the schema ({len(problems)} problems): {listed}")
    return with_.value


def _violations(schema: dict[str, Any], value: Any) -> list[str]:
    """Every way ``value`` breaks ``schema``, as ``$.path: why``, in path order."""
    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema, registry=Registry())
    errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.path])
    return [f"{e.json_path}: {e.message}" for e in errors]


@workflow.defn(
    name=FOR_EACH_BATCH_WORKFLOW_TYPE, failure_exception_types=[pydantic.ValidationError]
)
class DagForEachBatch(_Executor):
    """Runs a slice of a big for_each for a DagRun, so no single history grows too long."""

    @workflow.run
    async def run(self, arg: ForEachBatchInput) -> ForEachBatchResult:
        """Run the items and report every output and every failure."""
        self.ctx = arg.run
        self.workflow_id = arg.workflow_id
        self._inflight = 0
        self._draining = False
        self._policies = {}
        step = self.ctx.definition.steps[arg.step]
        scope = {**self._base_scope(), "steps": arg.steps}
        outputs: dict[int, Any] = {}
        failed, most = await self._run_items(
            arg.step,
            step,
            list(zip(arg.indices, arg.items, strict=True)),
            self._window(arg.concurrency, len(arg.indices)),
            arg.series,
            arg.overrides,
            scope,
            arg.fail_fast,
            outputs.__setitem__,
        )
        return ForEachBatchResult(outputs=outputs, failed=failed, attempts=most)


@workflow.defn(name=WORKFLOW_TYPE, failure_exception_types=[pydantic.ValidationError])
class DagRun(_Executor):
    """Interprets one run of a stored definition."""

    @workflow.init
    def __init__(self, arg: DagRunInput) -> None:
        filled = with_defaults(arg.definition.input, arg.input)
        self.ctx = arg if filled is arg.input else arg.model_copy(update={"input": filled})
        self.definition: Definition = arg.definition
        self.workflow_id = workflow.info().workflow_id
        resume = arg.resume
        self.records: dict[str, StepRecord] = (
            dict(resume.steps) if resume else _fresh_records(arg.definition, arg.reuse)
        )
        self._events: dict[str, Any] = dict(resume.events) if resume else {}
        self._overrides: dict[str, dict[str, Any]] = dict(resume.overrides) if resume else {}
        self._started_at: datetime | None = resume.started_at if resume else None
        self._deadline: datetime | None = resume.deadline if resume else None
        self._continued = resume.continued if resume else 0
        self._decisions: dict[str, _Decision] = {}
        self._fatal: _Fatal | None = None
        self._crash: BaseException | None = None
        self._status = RunStatus.RUNNING
        self._inflight = 0
        self._draining = False
        self._policies = {}
        self._stopping = False
        self._dirty = True
        self._waiting: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._live = 0
        """Step tasks not yet done (parked and waiting steps count)."""
        self._open = sum(1 for r in self.records.values() if r.status not in TERMINAL)
        self._readiness = Readiness(arg.definition)
        self._primaries: dict[str, list[str]] = {}
        self._fallback_of: dict[str, str] = {}
        """The fallback step of each step that names one (``on_error: {fallback: ...}``)."""
        for sid, step in arg.definition.steps.items():
            fallback = _as_fallback(arg.definition.on_error(step))
            if fallback:
                self._primaries.setdefault(fallback.fallback, []).append(sid)
                self._fallback_of[sid] = fallback.fallback
        self._refs: dict[str, frozenset[str] | None] = {}
        self._published: str | None = None
        self._slots: asyncio.Semaphore | None = None

    # --- the run --------------------------------------------------------------------------

    @workflow.run
    async def run(self, arg: DagRunInput) -> Any:
        """Run every step as its needs allow and return the definition's ``output``."""
        now = workflow.now()
        if self._started_at is None:
            self._started_at = now
            if self.definition.timeout:
                self._deadline = now + self.definition.timeout
        if self.definition.max_parallel:
            self._slots = asyncio.Semaphore(self.definition.max_parallel)
        self._ensure_attributes()
        finished = [sid for sid, r in self.records.items() if r.status in TERMINAL]
        for sid in self._readiness.initial(finished):
            self._launch(sid)
        try:
            await self._supervise()
        except asyncio.CancelledError:
            await self._stop_all()
            self._publish(RunStatus.CANCELLED)
            raise
        self._publish(RunStatus.COMPLETED)
        try:
            return expressions.render(self.definition.output, self._scope(None))
        except expressions.ExpressionError as e:
            self._publish(RunStatus.FAILED)
            raise ApplicationError(
                f"output: expression `{e.expression}` failed: {e.reason}",
                type="OutputFailed",
                non_retryable=True,
            ) from None

    async def _supervise(self) -> None:
        while True:
            remaining = self._remaining()
            try:
                # the summary names the run-timeout timer; without a timeout there is none
                # (and the SDK would encode the summary on every wake-up all the same)
                await workflow.wait_condition(
                    lambda: self._dirty,
                    timeout=remaining,
                    timeout_summary="run timeout" if remaining is not None else None,
                )
            except TimeoutError:
                timeout = self.definition.timeout or timedelta(0)
                self._fatal = _Fatal(
                    RunStatus.TIMED_OUT,
                    f"run timed out after {format_duration(timeout)}",
                    "RunTimedOut",
                )
            self._dirty = False
            if self._crash is not None:
                raise self._crash
            if self._fatal is not None:
                fatal = self._fatal
                await self._stop_all()
                self._publish(fatal.status)
                raise ApplicationError(
                    fatal.message,
                    {"step": fatal.step, "status": fatal.status.value},
                    type=fatal.type,
                    non_retryable=True,
                )
            if self._open == 0:
                return
            if not self._draining and self._live == 0:
                stuck = ", ".join(s for s, r in self.records.items() if r.status not in TERMINAL)
                self._fatal = _Fatal(
                    RunStatus.FAILED,
                    f"steps that can never start: {stuck} (needs naming no step, or a cycle)",
                    "InvalidDefinition",
                )
                self._dirty = True
                continue
            self._publish(None)
            if not self._draining and self._history_full():
                self._draining = True
            if self._draining and self._inflight == 0 and workflow.all_handlers_finished():
                self._continue_as_new()

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max((self._deadline - workflow.now()).total_seconds(), 0.001)

    def _history_full(self) -> bool:
        info = workflow.info()
        length, _, unrecorded = self._current_task()
        return length + unrecorded >= self.ctx.history_limit or info.is_continue_as_new_suggested()

    def _continue_as_new(self) -> None:
        assert self._started_at is not None
        state = RunState(
            steps=self.records,
            events=self._events,
            overrides=self._overrides,
            started_at=self._started_at,
            deadline=self._deadline,
            continued=self._continued + 1,
        )
        workflow.continue_as_new(self.ctx.model_copy(update={"resume": state}))

    async def _stop_all(self) -> None:
        """Cancel every step still going (the run is failing or being cancelled)."""
        self._stopping = True
        pending = [t for t in self._tasks.values() if not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _notify(self) -> None:
        self._dirty = True

    # --- steps ----------------------------------------------------------------------------

    def _launch(self, sid: str) -> None:
        self._live += 1
        self._tasks[sid] = asyncio.create_task(self._step_task(sid))

    async def _step_task(self, sid: str) -> None:
        try:
            await self._step_lifecycle(sid)
        finally:
            self._live -= 1

    async def _step_lifecycle(self, sid: str) -> None:
        try:
            status = await self._run_step(sid)
        except _Suspended:
            self._notify()
            return
        except asyncio.CancelledError:
            status = StepStatus.CANCELLED
        except BaseException as e:  # a bug: fail the workflow task, not the run
            if self._stopping:
                status = StepStatus.CANCELLED
                self._finish(sid, status)
                return
            self._crash = e
            self._notify()
            return
        self._finish(sid, status)

    def _finish(self, sid: str, status: StepStatus) -> None:
        record = self.records[sid]
        if record.status in TERMINAL:
            return
        record.status = status
        record.finished_at = workflow.now()
        self._open -= 1
        for ready in self._readiness.finish(sid):
            self._launch(ready)
        fallback = self._fallback_of.get(sid)
        if fallback is not None:
            self._settle_unused_fallback(fallback)
        self._notify()

    def _settle_unused_fallback(self, fallback: str) -> None:
        """Mark a fallback step skipped once none of its primaries can still need it."""
        primaries = self._primaries.get(fallback, [])
        if self.records[fallback].status in TERMINAL:
            return
        if any(self.records[p].fallback == fallback for p in primaries):
            return
        if all(self.records[p].status in TERMINAL for p in primaries):
            self.records[fallback].note = "not needed: no step fell back to it"
            self._finish(fallback, StepStatus.SKIPPED)

    async def _run_step(self, sid: str) -> StepStatus:
        step = self.definition.steps[sid]
        record = self.records[sid]
        if record.status == StepStatus.PENDING:
            outcomes = {n: self.records[n].status for n in step.needs}
            met, why = trigger_met(step.trigger_rule, outcomes)
            if not met:
                record.note = why
                return StepStatus.SKIPPED
            record.status = StepStatus.RUNNING
            record.started_at = workflow.now()
            self._notify()
        while True:
            if record.fallback is not None and record.status == StepStatus.RUNNING:
                return await self._fall_back(sid, record, record.fallback)
            if record.status == StepStatus.RUNNING:
                try:
                    if step.if_ is not None and not self._condition(sid, step):
                        record.note = "condition was false"
                        return StepStatus.SKIPPED
                    record.output = await self._execute(sid, step, record)
                    record.error = None if record.fallback is None else record.error
                    return StepStatus.SUCCEEDED
                except StepFailure as failure:
                    if self._stopping:
                        return StepStatus.CANCELLED
                    record.error = failure.message
                    record.attempts = max(record.attempts, failure.attempts)
            outcome = await self._on_error(sid, step, record)
            if outcome is not None:
                return outcome

    def _condition(self, sid: str, step: Step) -> bool:
        assert step.if_ is not None
        try:
            return expressions.condition(step.if_, self._scope(sid))
        except expressions.ExpressionError as e:
            raise StepFailure(f"if: expression `{e.expression}` failed: {e.reason}") from None

    async def _on_error(self, sid: str, step: Step, record: StepRecord) -> StepStatus | None:
        """Apply ``on_error`` to a failed step; None means it runs again (manual retry)."""
        mode = self.definition.on_error(step)
        if record.status == StepStatus.NEEDS_ATTENTION:
            mode = "manual"
        if mode == "fail":
            if self._fatal is None:
                message = f"step '{sid}' failed: {record.error}"
                self._fatal = _Fatal(RunStatus.FAILED, message, "StepFailed", sid)
            return StepStatus.FAILED
        if mode == "continue":
            return StepStatus.FAILED
        if mode == "skip":
            record.note = "skipped after failing (on_error: skip)"
            return StepStatus.SKIPPED
        fallback = _as_fallback(mode)
        if fallback is not None:
            return await self._fall_back(sid, record, fallback.fallback)
        decision = await self._park(sid, record)
        if decision.action == "complete":
            record.output = decision.output
            record.note = "completed by an operator"
            return StepStatus.SUCCEEDED
        if decision.action == "skip":
            record.note = "skipped by an operator"
            return StepStatus.SKIPPED
        if decision.with_:
            self._overrides[sid] = {**self._overrides.get(sid, {}), **decision.with_}
            self._refs.pop(sid, None)
        record.series += 1
        record.status = StepStatus.RUNNING
        record.note = f"retried by an operator (series {record.series})"
        self._notify()
        return None

    async def _park(self, sid: str, record: StepRecord) -> _Decision:
        record.status = StepStatus.NEEDS_ATTENTION
        self._notify()
        labels = (self.ctx.tenant, self.definition.name, self.definition.steps[sid].uses)
        metrics.step_parked(*labels)
        await workflow.wait_condition(lambda: sid in self._decisions)
        decision = self._decisions.pop(sid)
        metrics.step_resolved(*labels, decision.action)
        return decision

    async def _fall_back(self, sid: str, record: StepRecord, fallback: str) -> StepStatus:
        record.fallback = fallback
        stand_in = self.records[fallback]
        needs = self.definition.steps[fallback].needs
        await workflow.wait_condition(
            lambda: all(self.records[n].status in TERMINAL for n in needs)
        )
        if stand_in.status == StepStatus.PENDING:
            stand_in.status = StepStatus.RUNNING
            stand_in.started_at = workflow.now()
        self._notify()
        status = await self._run_step(fallback)
        self._finish(fallback, status)
        if status == StepStatus.SUCCEEDED:
            record.output = stand_in.output
            record.note = f"fallback '{fallback}' stood in"
        return status

    async def _execute(self, sid: str, step: Step, record: StepRecord) -> Any:
        scope = self._scope(sid)
        overrides = self._overrides.get(sid)
        uses_slot = step.uses not in WORKFLOW_KINDS or step.uses == "workflow"
        if uses_slot and self._slots is not None:
            async with self._slots:
                return await self._execute_unit_or_items(sid, step, record, scope, overrides)
        return await self._execute_unit_or_items(sid, step, record, scope, overrides)

    async def _execute_unit_or_items(
        self,
        sid: str,
        step: Step,
        record: StepRecord,
        scope: dict[str, Any],
        overrides: dict[str, Any] | None,
    ) -> Any:
        if step.for_each is None:
            output, attempts = await self._run_unit(
                sid, step, None, None, record.series, overrides, scope, record
            )
            record.attempts = max(record.attempts, attempts)
            return output
        return await self._for_each(sid, step, record, scope, overrides)

    async def _for_each(
        self,
        sid: str,
        step: Step,
        record: StepRecord,
        scope: dict[str, Any],
        overrides: dict[str, Any] | None,
    ) -> Any:
        items = self._items(step, scope)
        if record.item_outputs is None:
            record.item_outputs = {}
        done = record.item_outputs
        record.items_total = len(items)
        record.items_done = len(done)
        todo = [(i, item) for i, item in enumerate(items) if i not in done]

        def on_output(index: int, output: Any) -> None:
            done[index] = output
            record.items_done = len(done)

        fail_fast = self.definition.on_error(step) != "manual"
        run: Callable[..., Awaitable[tuple[dict[int, str], int]]] = self._run_items
        concurrency = step.concurrency
        if len(todo) > self.ctx.batch_size and step.uses not in WORKFLOW_KINDS - {"workflow"}:
            run = self._run_batches
        elif step.uses not in WORKFLOW_KINDS or step.uses == "workflow":
            concurrency = self._window(concurrency, len(todo))
        failed, most = await run(
            sid, step, todo, concurrency, record.series, overrides, scope, fail_fast, on_output
        )
        record.attempts = max(record.attempts, most)
        record.items_failed = sorted(failed) or None
        if failed:
            first = min(failed)
            raise StepFailure(
                f"{len(failed)} of {len(items)} items failed; first: "
                f"{step_key(sid, first)}: {failed[first]}",
                most,
            )
        record.item_outputs = None
        return [done[i] for i in range(len(items))]

    def _items(self, step: Step, scope: dict[str, Any]) -> list[Any]:
        source = step.for_each
        try:
            if isinstance(source, str):
                tpl = expressions.template(source) if "${{" in source else None
                items = (
                    tpl.render(scope)
                    if tpl
                    else expressions.compile_expression(source).evaluate(scope)
                )
            else:
                items = expressions.render(source, scope)
        except expressions.ExpressionError as e:
            raise StepFailure(f"for_each: expression `{e.expression}` failed: {e.reason}") from None
        if not isinstance(items, list):
            raise StepFailure(f"for_each must be a list, got {type(items).__name__}")
        return items

    async def _run_batches(
        self,
        sid: str,
        step: Step,
        items: list[tuple[int, Any]],
        concurrency: int | None,
        series: int,
        overrides: dict[str, Any] | None,
        scope: dict[str, Any],
        fail_fast: bool,
        on_output: Callable[[int, Any], None],
    ) -> tuple[dict[int, str], int]:
        """Run a big for_each in child workflows of ``batch_size`` items each."""
        size = self.ctx.batch_size
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        at_once = self.ctx.batches_at_once if concurrency is None else -(-concurrency // size)
        per_child = None if concurrency is None else -(-concurrency // at_once)
        gate = asyncio.Semaphore(min(at_once, 20))
        failed: dict[int, str] = {}
        most = 0
        reads_input = any(
            "input" in e.names for e in _expressions_of([step.with_, overrides], None)
        )
        run = self.ctx.model_copy(
            update={
                "resume": None,
                "input": self.ctx.input if reads_input else None,
                "library": self.ctx.library if step.uses == "workflow" else {},
            }
        )

        async def one(chunk: list[tuple[int, Any]]) -> None:
            nonlocal most
            async with gate:
                if failed and fail_fast:
                    return
                if self._draining:
                    raise _Suspended()
                arg = ForEachBatchInput(
                    run=run,
                    workflow_id=self.workflow_id,
                    step=sid,
                    indices=[i for i, _ in chunk],
                    items=[item for _, item in chunk],
                    concurrency=per_child,
                    series=series,
                    overrides=overrides,
                    steps=scope["steps"],
                    fail_fast=fail_fast,
                )
                first = chunk[0][0]
                self._inflight += 1
                try:
                    result = await workflow.execute_child_workflow(
                        FOR_EACH_BATCH_WORKFLOW_TYPE,
                        arg,
                        id=f"{self.workflow_id}/{sid}[{first}-{chunk[-1][0]}]#{series}",
                        result_type=ForEachBatchResult,
                        search_attributes=run_attributes(
                            self.ctx.tenant,
                            self.definition.name,
                            self.ctx.version,
                            self.ctx.command,
                        ),
                        static_summary=f"{sid}[{first}..{chunk[-1][0]}]",
                        priority=tenant_priority(self.ctx.tenant),
                    )
                except ChildWorkflowError as e:
                    for i, _ in chunk:
                        failed[i] = f"batch failed: {_describe(e)}"
                    return
                finally:
                    self._inflight -= 1
                for index, output in sorted(result.outputs.items()):
                    on_output(index, output)
                failed.update(result.failed)
                most = max(most, result.attempts)
                self._notify()

        results = await asyncio.gather(*(one(c) for c in chunks), return_exceptions=True)
        for outcome in results:
            if isinstance(outcome, BaseException):
                raise outcome
        return failed, most

    async def _wait(self, sid: str, with_: WaitWith, record: StepRecord | None) -> Any:
        now = workflow.now()
        if record is not None and record.wait_until is not None:
            until: datetime | None = record.wait_until
        elif with_.duration is not None:
            until = now + parse_duration(with_.duration)
        elif with_.until is not None:
            until = _timestamp(with_.until)
        elif with_.timeout is not None:
            until = now + parse_duration(with_.timeout)
        else:
            until = None
        if record is not None:
            record.wait_until = until
        self._waiting.add(sid)
        self._notify()
        try:
            if with_.event is None:
                assert until is not None
                delay = (until - now).total_seconds()
                if delay > 0:
                    await workflow.sleep(delay, summary=f"{sid}: wait")
                return None
            event = with_.event
            remaining = None if until is None else max((until - now).total_seconds(), 0.001)
            try:
                await workflow.wait_condition(
                    lambda: event in self._events,
                    timeout=remaining,
                    timeout_summary=f"{sid}: wait for {event}",
                )
            except TimeoutError:
                raise StepFailure(f"no event '{event}' arrived before the timeout") from None
            return self._events[event]
        finally:
            self._waiting.discard(sid)
            if record is not None:
                record.wait_until = None
            self._notify()

    # --- scope and status -----------------------------------------------------------------

    def _scope(self, sid: str | None) -> dict[str, Any]:
        refs = self._step_refs(sid)
        names = self.records if refs is None else refs
        steps = {
            n: {"output": self.records[n].output, "status": self.records[n].status.value}
            for n in names
            if n in self.records
        }
        return {**self._base_scope(), "steps": steps}

    def _step_refs(self, sid: str | None) -> frozenset[str] | None:
        if sid is None:
            return _refs_of(self.definition.output, None)
        if sid not in self._refs:
            step = self.definition.steps[sid]
            parts = [step.with_, step.for_each, self._overrides.get(sid)]
            self._refs[sid] = _refs_of(parts, step.if_)
        return self._refs[sid]

    def _current_status(self, statuses: list[StepStatus]) -> RunStatus:
        """The status of a run still going, given every step's status (in record order)."""
        if StepStatus.NEEDS_ATTENTION in statuses:
            return RunStatus.NEEDS_ATTENTION
        if self._waiting and self._inflight == 0:
            return RunStatus.WAITING
        return RunStatus.RUNNING

    def _publish(self, status: RunStatus | None) -> None:
        """Record the run's status (None: as the steps say) and upsert ``DagStatus`` when it
        changed.

        Called on every wake-up, so it reads each record once (identity checks only; hashing or
        ``.value`` of an enum per record costs far more, in the sandbox most of all).
        """
        statuses = [r.status for r in self.records.values()]
        if status is None:
            status = self._current_status(statuses)
        self._status = status
        value = DAG_STATUS_VALUES[status]
        if value != self._published:
            workflow.upsert_search_attributes([DAG_STATUS.value_set(value)])
            self._published = value

    def _ensure_attributes(self) -> None:
        current = workflow.info().typed_search_attributes
        self._published = current.get(DAG_STATUS)
        if current.get(TENANT_ID) is None:
            wanted = run_attributes(
                self.ctx.tenant, self.definition.name, self.ctx.version, self.ctx.command
            )
            workflow.upsert_search_attributes([p.key.value_set(p.value) for p in wanted])
            self._published = "Running"

    def current_details(self) -> str:
        """The Web UI's details of the run, made when they are asked for.

        The SDK hands current details out only in answer to its metadata query, and
        :class:`worker.interceptors.RunDetailsInterceptor` fills them in there from this
        method, so no wake-up of the run pays for a table nobody reads.
        """
        return self._markdown([r.status for r in self.records.values()])

    def _markdown(self, statuses: list[StepStatus]) -> str:
        """The Web UI's details: counts by status (in order of first appearance), then
        unfinished and failed steps first; ``statuses`` are the records' in record order."""
        first = sorted((statuses.index(s), s) for s in _STATUS_ORDER if s in statuses)
        summary = ", ".join(f"{statuses.count(s)} {s.value}" for _, s in first)
        pending, succeeded = StepStatus.PENDING, StepStatus.SUCCEEDED
        ids = list(self.records)
        shown = [
            sid
            for sid, s in zip(ids, statuses, strict=True)
            if s is not pending and s is not succeeded
        ][:DETAILS_ROWS]
        if len(shown) < DETAILS_ROWS:
            quiet = [
                sid for sid, s in zip(ids, statuses, strict=True) if s is pending or s is succeeded
            ]
            shown += quiet[: DETAILS_ROWS - len(shown)]
        lines = [f"**{self._status.value}** · {summary}", "", "| step | status | attempts |"]
        lines.append("|---|---|---|")
        for sid in shown:
            r = self.records[sid]
            items = f" ({r.items_done}/{r.items_total})" if r.items_total is not None else ""
            lines.append(f"| {sid} | {r.status!s}{items} | {r.attempts} |")
        if len(self.records) > DETAILS_ROWS:
            lines.append(f"| … {len(self.records) - DETAILS_ROWS} more | | |")
        return "\n".join(lines)

    # --- operators ------------------------------------------------------------------------

    @workflow.query(name="progress")
    def progress(self) -> Progress:
        """Every step: status, attempts, times, last error."""
        steps = [
            StepProgress(
                step=sid,
                kind=self.definition.steps[sid].uses,
                status=r.status,
                attempts=r.attempts,
                started_at=r.started_at,
                finished_at=r.finished_at,
                error=r.error,
                note=r.note,
                fallback=r.fallback,
                items_total=r.items_total,
                items_done=r.items_done,
                items_failed=r.items_failed,
            )
            for sid, r in self.records.items()
        ]
        return Progress(
            status=self._status,
            tenant=self.ctx.tenant,
            definition=self.definition.name,
            version=self.ctx.version,
            started_at=self._started_at or workflow.now(),
            continued=self._continued,
            error=self._fatal.message if self._fatal else None,
            steps=steps,
        )

    @workflow.query(name="snapshot")
    def snapshot(self) -> RunSnapshot:
        """The run's input and every step's record, outputs included (for reruns)."""
        return RunSnapshot(
            tenant=self.ctx.tenant,
            definition=self.definition.name,
            version=self.ctx.version,
            command=self.ctx.command,
            input=self.ctx.input,
            status=self._status,
            error=self._fatal.message if self._fatal else None,
            steps=self.records,
        )

    def _check_parked(self, step: str) -> None:
        """Reject a decision about a step that does not exist or is not parked.

        Raises:
            ApplicationError: Type ``UnknownStep`` or ``NotParked`` (an Update answers with it).
        """
        record = self.records.get(step)
        if record is None:
            raise ApplicationError(f"no step named '{step}'", type=UNKNOWN_STEP)
        if record.status != StepStatus.NEEDS_ATTENTION or step in self._decisions:
            raise ApplicationError(
                f"step '{step}' is not parked (status: {record.status.value})", type=NOT_PARKED
            )

    def _decide(self, step: str, decision: _Decision) -> Ack:
        self._decisions[step] = decision
        self._notify()
        return Ack(step=step, action=decision.action)

    def _try_decide(self, step: str, decision: _Decision) -> None:
        try:
            self._check_parked(step)
        except ApplicationError as e:
            workflow.logger.warning("ignored %s signal: %s", decision.action, e.message)
            return
        self._decide(step, decision)

    @workflow.signal(name="retry_step")
    def retry_step_signal(self, req: RetryStep) -> None:
        """Run a parked step again, ``with`` overriding its inputs."""
        self._try_decide(req.step, _Decision("retry", with_=req.with_))

    @workflow.update(name="retry_step")
    def retry_step(self, req: RetryStep) -> Ack:
        """Run a parked step again (Update: rejected unless the step is parked)."""
        return self._decide(req.step, _Decision("retry", with_=req.with_))

    @retry_step.validator
    def _validate_retry_step(self, req: RetryStep) -> None:
        self._check_parked(req.step)

    @workflow.signal(name="complete_step")
    def complete_step_signal(self, req: CompleteStep) -> None:
        """Resolve a parked step as succeeded with the operator's output."""
        self._try_decide(req.step, _Decision("complete", output=req.output))

    @workflow.update(name="complete_step")
    def complete_step(self, req: CompleteStep) -> Ack:
        """Resolve a parked step as succeeded (Update)."""
        return self._decide(req.step, _Decision("complete", output=req.output))

    @complete_step.validator
    def _validate_complete_step(self, req: CompleteStep) -> None:
        self._check_parked(req.step)

    @workflow.signal(name="skip_step")
    def skip_step_signal(self, req: SkipStep) -> None:
        """Resolve a parked step as skipped."""
        self._try_decide(req.step, _Decision("skip"))

    @workflow.update(name="skip_step")
    def skip_step(self, req: SkipStep) -> Ack:
        """Resolve a parked step as skipped (Update)."""
        return self._decide(req.step, _Decision("skip"))

    @skip_step.validator
    def _validate_skip_step(self, req: SkipStep) -> None:
        self._check_parked(req.step)

    @workflow.signal(name="fail_run")
    def fail_run_signal(self, req: FailRun) -> None:
        """Fail the run now, with the operator's reason."""
        self._fail_run(req)

    @workflow.update(name="fail_run")
    def fail_run(self, req: FailRun) -> Ack:
        """Fail the run now (Update)."""
        self._fail_run(req)
        return Ack(action="fail")

    def _fail_run(self, req: FailRun) -> None:
        if self._fatal is None:
            for sid, record in self.records.items():
                if record.status == StepStatus.NEEDS_ATTENTION:
                    uses = self.definition.steps[sid].uses
                    metrics.step_resolved(self.ctx.tenant, self.definition.name, uses, "fail")
            message = f"failed by an operator: {req.reason}"
            self._fatal = _Fatal(RunStatus.FAILED, message, "FailedByOperator")
        self._notify()

    @workflow.signal(name="send_event")
    def send_event_signal(self, req: SendEvent) -> None:
        """Deliver an event to the wait steps waiting on its name (now or later)."""
        self._events[req.name] = req.payload
        self._notify()

    @workflow.update(name="send_event")
    def send_event(self, req: SendEvent) -> Ack:
        """Deliver an event (Update)."""
        self.send_event_signal(req)
        return Ack(action="event")


def _fresh_records(definition: Definition, reuse: dict[str, StepRecord]) -> dict[str, StepRecord]:
    """Pending records for every step, except the steps a rerun reuses (those that succeeded)."""
    records = {sid: StepRecord() for sid in definition.steps}
    for sid, record in reuse.items():
        if sid in records and record.status == StepStatus.SUCCEEDED:
            records[sid] = record.model_copy(update={"note": "reused from the earlier run"})
    return records


def _expressions_of(values: Any, condition: bool | str | None) -> list[expressions.Expression]:
    """Every expression in ``values`` (and a condition, which may be bare CEL)."""
    sources = expressions.strings_with_expressions(values)
    exprs = [e for text in sources for e in expressions.template(text).expressions]
    if isinstance(condition, str):
        exprs += (
            expressions.template(condition).expressions
            if "${{" in condition
            else [expressions.compile_expression(condition)]
        )
    return exprs


def _refs_of(values: Any, condition: bool | str | None) -> frozenset[str] | None:
    """Steps the expressions in ``values`` (and a condition) read; None when any is dynamic."""
    found: set[str] = set()
    for expr in _expressions_of(values, condition):
        if expr.step_refs is None:
            return None
        found |= expr.step_refs
    return frozenset(found)


def _timestamp(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise StepFailure(f"until: not an RFC 3339 timestamp: {text!r}") from None
