"""Step activities the engine tests use: plain plugins written the way a plugin author would."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from workflows.types import StepInput


class Probe:
    """Records what the test activities saw: calls per key, and peak concurrency."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = defaultdict(int)
        self.inputs: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.running = 0
        self.peak = 0
        self.release = asyncio.Event()
        self.release.set()

    def activities(self) -> list[Any]:
        """The activities, bound to this probe."""
        probe = self

        @activity.defn(name="noop")
        async def noop(inp: StepInput) -> Any:
            probe.calls[inp.key] += 1
            probe.inputs[inp.key].append(inp.with_)
            return inp.with_.get("value", inp.key)

        @activity.defn(name="slow")
        async def slow(inp: StepInput) -> Any:
            probe.calls[inp.key] += 1
            probe.running += 1
            probe.peak = max(probe.peak, probe.running)
            try:
                await asyncio.sleep(float(inp.with_.get("seconds", 0.2)))
                await probe.release.wait()
            finally:
                probe.running -= 1
            return inp.key

        @activity.defn(name="flaky")
        async def flaky(inp: StepInput) -> Any:
            """Fails ``fail_times`` times for each key, then returns ``value``."""
            probe.calls[inp.key] += 1
            probe.inputs[inp.key].append(inp.with_)
            if probe.calls[inp.key] <= int(inp.with_.get("fail_times", 0)):
                raise ApplicationError(
                    f"flaky failure {probe.calls[inp.key]}",
                    type=str(inp.with_.get("error_type", "Flaky")),
                    non_retryable=bool(inp.with_.get("non_retryable", False)),
                )
            return inp.with_.get("value", "ok")

        @activity.defn(name="boom")
        async def boom(inp: StepInput) -> Any:
            """Fails unless ``with.ok`` is true (so a retry with overrides can fix it)."""
            probe.calls[inp.key] += 1
            probe.inputs[inp.key].append(inp.with_)
            if inp.with_.get("ok"):
                return {"fixed": True, "key": inp.key}
            raise ApplicationError(f"boom at {inp.key}", type="Boom", non_retryable=True)

        return [noop, slow, flaky, boom]
