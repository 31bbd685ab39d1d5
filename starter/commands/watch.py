"""``dagflow runs watch``: a live view of a run, redrawn in place with plain ANSI escapes.

The view polls the run's trace (``GET /v1/runs/{run}/trace``) and draws a table of its steps
(status, attempts, elapsed time, a progress bar for ``for_each`` steps, the last error). It
stops when the run ends or parks a step, then says what to do about a parked step. Without a
terminal (or with ``--json``) it prints one JSON line per change instead.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import aiohttp
import click

from starter.api.runs import RunDetail, RunTrace, StepState, StepTrace
from starter.client import DagflowClient
from starter.commands.exits import OK, RUN_FAILED
from starter.commands.output import compact, seconds
from starter.errors import Retryable

CLOSED = frozenset({"completed", "failed", "cancelled", "timed_out"})
"""Run statuses that are final."""
PARKED = "needs_attention"
PATIENCE = 60.0
"""Seconds a watch keeps polling through a service that does not answer (or answers 429 or
503) before it gives up with exit code 3."""
BAR = 20
"""Width of a for_each progress bar, in characters."""
HEADERS = ("STEP", "KIND", "STATUS", "ATTEMPTS", "ELAPSED", "DETAIL")
COLORS = {
    "succeeded": "green",
    "completed": "green",
    "running": "cyan",
    "waiting": "cyan",
    "failed": "red",
    "cancelled": "red",
    "timed_out": "red",
    "needs_attention": "yellow",
}

HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
CLEAR_LINE, CLEAR_BELOW = "\x1b[K", "\x1b[J"


def exit_code(status: str) -> int:
    """0 for a completed run; 1 for one that failed, was cancelled, timed out or is parked."""
    return OK if status == "completed" else RUN_FAILED


def ended(trace: RunTrace) -> bool:
    """Whether watching can stop: the run closed, or waits for an operator."""
    return trace.status in CLOSED or trace.status == PARKED


async def follow(
    client: DagflowClient,
    run: str,
    interval: float,
    on_trace: Callable[[RunTrace], None],
    *,
    through_parks: bool = False,
) -> RunDetail:
    """Poll a run's trace, handing each to ``on_trace``, until it ends (or, unless
    ``through_parks``, parks a step); then return the run as it ended or parked."""
    loop = asyncio.get_running_loop()
    last_answer = loop.time()
    while True:
        try:
            trace = await client.runs.trace(run)
        except (Retryable, aiohttp.ClientConnectionError):
            # a restarting service, a 429 or a 503 from Temporal: keep watching for a while
            if loop.time() - last_answer > PATIENCE:
                raise
            await asyncio.sleep(max(interval, 1.0))
            continue
        last_answer = loop.time()
        on_trace(trace)
        if trace.status in CLOSED or (trace.status == PARKED and not through_parks):
            return await client.runs.get(run)
        await asyncio.sleep(interval)


async def watch(
    client: DagflowClient, run: str, interval: float, as_json: bool, out: TextIO
) -> int:
    """Watch a run until it ends or parks; the exit code says how it went."""
    if as_json:
        return await _watch_json(client, run, interval, out)
    view = View(out, color=_wants_color())
    try:
        detail = await follow(client, run, interval, view.draw)
    finally:
        view.close()
    for line in outcome(detail):
        click.echo(line, file=out)
    return exit_code(detail.status)


async def _watch_json(client: DagflowClient, run: str, interval: float, out: TextIO) -> int:
    last: dict[str, Any] | None = None

    def changed(trace: RunTrace) -> None:
        nonlocal last
        state = trace.model_dump(exclude={"duration"})
        if state != last:
            last = state
            click.echo(trace.model_dump_json(), file=out)

    detail = await follow(client, run, interval, changed)
    click.echo(detail.model_dump_json(), file=out)
    return exit_code(detail.status)


class View:
    """Draws frames over the previous one: cursor up, rewrite each line, clear the rest."""

    def __init__(self, out: TextIO, *, color: bool) -> None:
        self.out = out
        self.color = color
        self.height = 0
        self.out.write(HIDE_CURSOR)

    def draw(self, trace: RunTrace) -> None:
        """Draw the run's current state over the last frame."""
        size = shutil.get_terminal_size()
        lines = frame(trace, datetime.now(UTC), size.columns, size.lines, color=self.color)
        text = f"\r\x1b[{self.height}A" if self.height else "\r"
        text += "".join(f"{line}{CLEAR_LINE}\n" for line in lines) + CLEAR_BELOW
        self.out.write(text)
        self.out.flush()
        self.height = len(lines)

    def close(self) -> None:
        """Show the cursor again."""
        self.out.write(SHOW_CURSOR)
        self.out.flush()


def _wants_color() -> bool:
    return "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def frame(
    trace: RunTrace, now: datetime, width: int, height: int, *, color: bool = False
) -> list[str]:
    """The lines of one view of a run, each cut to fit ``width``; at most ``height - 1``."""
    width = max(width - 1, 20)
    paint = _painter(color)
    head = f"{trace.id}  version {trace.version}  {trace.status}  {seconds(trace.duration)}"
    rows = [_row(step, now) for step in trace.steps]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS[:-1])]
    lines = [_status_painted(head[:width], trace.status, paint)]
    header = "  ".join(h.ljust(w) for h, w in zip(HEADERS, [*widths, 0], strict=True))
    lines.append(header.rstrip()[:width])
    status_at = sum(widths[:2]) + 4
    for row, step in zip(rows, trace.steps, strict=True):
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)]
        line = ("  ".join([*cells, row[-1]])).rstrip()[:width]
        lines.append(paint(line, step.status, status_at, status_at + len(step.status)))
    room = max(height - 1, 4)
    if len(lines) > room:
        hidden = len(lines) - room + 1
        lines = [*lines[: room - 1], f"... and {hidden} more steps (widen the terminal)"[:width]]
    return lines


def _status_painted(head: str, status: str, paint: Callable[..., str]) -> str:
    at = head.find(f"  {status}  ")
    return head if at < 0 else paint(head, status, at + 2, at + 2 + len(status))


def _painter(color: bool) -> Callable[[str, str, int, int], str]:
    def paint(line: str, status: str, start: int, end: int) -> str:
        fg = COLORS.get(status)
        if not color or fg is None or end > len(line):
            return line
        return line[:start] + click.style(line[start:end], fg=fg, bold=True) + line[end:]

    return paint


def _row(step: StepTrace, now: datetime) -> list[str]:
    if step.duration is not None:
        elapsed = seconds(step.duration)
    elif step.started_at is not None:
        elapsed = seconds(max((now - step.started_at).total_seconds(), 0.0))
    else:
        elapsed = ""
    return [
        step.step,
        step.kind,
        step.status,
        str(step.attempts) if step.attempts else "",
        elapsed,
        step_detail(step),
    ]


def step_detail(step: StepTrace) -> str:
    """A for_each step's progress bar, then its last error or note."""
    parts = []
    if step.items_total is not None:
        parts.append(progress_bar(step.items_done or 0, step.items_total, step.items_failed))
    if step.error:
        parts.append(step.error.splitlines()[0] if step.error.strip() else step.error)
    elif step.note:
        parts.append(step.note)
    return "  ".join(parts)


def progress_bar(done: int, total: int, failed: Sequence[int] | None = None) -> str:
    """``[########............]  8/20``, with ``, N failed`` when items failed."""
    filled = BAR if total <= 0 else min(BAR, BAR * done // total)
    text = f"[{'#' * filled}{'.' * (BAR - filled)}]  {done}/{total}"
    return f"{text}, {len(failed)} failed" if failed else text


def outcome(detail: RunDetail) -> list[str]:
    """What people read when the watch stops: the outcome, or what to do about a parked step."""
    if detail.status == "completed":
        return ["", f"run {detail.id} completed", f"output: {compact(detail.output, 2000)}"]
    if detail.status in CLOSED:
        return ["", f"run {detail.id} {detail.status}: {detail.error or detail.status}"]
    if detail.status != PARKED:
        return ["", f"run {detail.id} is {detail.status}"]
    return ["", *hints(detail.id, detail.steps)]


def hints(run_id: str, steps: Sequence[StepState]) -> list[str]:
    """What to do about a run's parked steps: the commands that resolve each one."""
    run = shlex.quote(run_id)
    lines: list[str] = []
    for step in (s for s in steps if s.status == PARKED):
        name = shlex.quote(step.step)
        tries = f"{step.attempts} attempt{'s' if step.attempts != 1 else ''}"
        commands = [
            (f"dagflow runs retry {run} {name}", "run it again (--with JSON overrides its inputs)"),
            (f"dagflow runs complete {run} {name} --output JSON", "resolve it with this output"),
            (f"dagflow runs skip {run} {name}", "resolve it as skipped"),
        ]
        width = max(len(command) for command, _ in commands)
        lines.append(
            f"run {run_id} needs attention: step {step.step} failed after {tries}"
            + (f": {step.error}" if step.error else "")
        )
        lines += [f"  {command.ljust(width)}  # {why}" for command, why in commands]
    lines += [
        f"or give up on the run: dagflow runs fail {run}",
        f"then follow it again:  dagflow runs watch {run}",
    ]
    return lines
