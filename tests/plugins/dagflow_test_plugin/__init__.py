"""Step kinds for dagflow's tests, registered in the ``dagflow.steps`` entry point group."""

from __future__ import annotations

from temporalio import activity

from workflows.types import StepInput


class FlakyError(Exception):
    """What ``flaky`` raises while it is still failing."""


@activity.defn(name="shout")
async def shout(step: StepInput) -> dict[str, str]:
    """Upper-case ``with.text``."""
    return {"text": str(step.with_["text"]).upper()}


@activity.defn(name="flaky")
async def flaky(step: StepInput) -> dict[str, float]:
    """Fail the first ``with.failures`` attempts (a plain exception), then succeed.

    Returns the attempt that succeeded and the seconds spent waiting between attempts.
    """
    info = activity.info()
    if info.attempt <= int(step.with_.get("failures", 1)):
        raise FlakyError(f"attempt {info.attempt} failed on purpose")
    waited = info.current_attempt_scheduled_time - info.scheduled_time
    return {"attempt": info.attempt, "waited": waited.total_seconds()}
