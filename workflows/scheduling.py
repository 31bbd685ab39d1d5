"""Pure scheduling decisions of the interpreter: readiness, trigger rules, retry policies."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from datetime import timedelta

from temporalio.common import Priority, RetryPolicy

from workflows.definition import Definition, Retry, TriggerRule
from workflows.types import LinearBackoff, StepStatus

TERMINAL = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED}
)


class Readiness:
    """Counts each step's unfinished needs and says which steps become ready.

    Steps named only as fallbacks are never made ready here: they run when their primary fails.
    """

    def __init__(self, definition: Definition) -> None:
        self._fallbacks = definition.fallback_steps()
        self._dependents: dict[str, list[str]] = {sid: [] for sid in definition.steps}
        self._remaining: dict[str, int] = {}
        for sid, step in definition.steps.items():
            self._remaining[sid] = len(step.needs)
            for need in step.needs:
                self._dependents.setdefault(need, []).append(sid)

    def initial(self, finished: Iterable[str] = ()) -> list[str]:
        """Steps ready at the start, given the steps already finished (after continue-as-new)."""
        done = set(finished)
        for sid in done:
            for dependent in self._dependents.get(sid, []):
                self._remaining[dependent] -= 1
        return [
            sid
            for sid, left in self._remaining.items()
            if left == 0 and sid not in done and sid not in self._fallbacks
        ]

    def finish(self, step: str) -> list[str]:
        """Record that ``step`` finished; return the steps that became ready."""
        ready = []
        for dependent in self._dependents[step]:
            self._remaining[dependent] -= 1
            if self._remaining[dependent] == 0 and dependent not in self._fallbacks:
                ready.append(dependent)
        return ready


def trigger_met(rule: TriggerRule, outcomes: Mapping[str, StepStatus]) -> tuple[bool, str]:
    """Whether a step may run given its needs' outcomes, and if not, why.

    Args:
        rule: The step's trigger rule.
        outcomes: Each need's final status.

    Returns:
        ``(True, "")`` or ``(False, reason)``.
    """
    failed = [s for s, o in outcomes.items() if o in (StepStatus.FAILED, StepStatus.CANCELLED)]
    not_ok = [s for s, o in outcomes.items() if o != StepStatus.SUCCEEDED]
    if rule == "all_done":
        return True, ""
    if rule == "all_succeeded" and not_ok:
        return False, _why(rule, not_ok, outcomes)
    if rule == "none_failed" and failed:
        return False, _why(rule, failed, outcomes)
    if rule == "any_succeeded" and outcomes and len(not_ok) == len(outcomes):
        return False, _why(rule, not_ok, outcomes)
    return True, ""


def _why(rule: str, culprits: list[str], outcomes: Mapping[str, StepStatus]) -> str:
    listed = ", ".join(f"{s} {outcomes[s].value}" for s in culprits)
    return f"trigger rule {rule} not met ({listed})"


def retry_policy(retry: Retry) -> tuple[RetryPolicy, LinearBackoff | None]:
    """Map a step's retry settings onto Temporal's RetryPolicy.

    Linear backoff has no Temporal equivalent: it is returned separately, and the activity side
    raises with ``next_retry_delay`` computed from it.
    """
    initial = retry.initial_interval or timedelta(seconds=1)
    attempts = 1 if retry.backoff == "none" else (retry.max_attempts or 3)
    coefficient = (retry.multiplier or 2.0) if retry.backoff == "exponential" else 1.0
    policy = RetryPolicy(
        initial_interval=initial,
        backoff_coefficient=coefficient,
        maximum_interval=retry.max_interval if retry.backoff == "exponential" else None,
        maximum_attempts=attempts,
        non_retryable_error_types=list(retry.non_retryable or []),
    )
    linear = None
    if retry.backoff == "linear":
        linear = LinearBackoff(
            initial=initial, increment=retry.increment or initial, maximum=retry.max_interval
        )
    return policy, linear


def step_key(step: str, index: int | None) -> str:
    """How a step (or one item of its for_each) is named in the run: ``reserve[3]``."""
    return step if index is None else f"{step}[{index}]"


def idempotency_key(workflow_id: str, key: str, series: int) -> str:
    """A key stable across the retries of one attempt series of a step."""
    digest = hashlib.sha256(f"{workflow_id}\x00{key}\x00{series}".encode()).hexdigest()
    return digest[:32]


FAIRNESS_KEY_BYTES = 64
"""The longest fairness key Temporal accepts, in UTF-8 bytes."""


@functools.lru_cache(maxsize=1024)
def tenant_priority(tenant: str) -> Priority:
    """The priority a run's activities and child workflows carry: the tenant as fairness key.

    On a server with task queue fairness on, the matching service dispatches a backlog round
    robin across fairness keys, so one tenant's flood does not starve the others. A tenant name
    longer than Temporal's 64-byte limit is cut at a character boundary. (Cached: a run asks
    for it once per step, and ``Priority`` is immutable.)
    """
    key = tenant.encode()[:FAIRNESS_KEY_BYTES].decode(errors="ignore")
    return Priority(fairness_key=key)
