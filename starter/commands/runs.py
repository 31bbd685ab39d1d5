"""``dagflow runs``: start, list, inspect, watch and steer runs of stored definitions."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, get_args

import click

from starter.api.runs import Action, RunDetail, RunRef, RunStatusName, RunTrace
from starter.client import DagflowClient
from starter.commands.connection import Connection, api_options, call
from starter.commands.exits import BAD_INPUT, OK, fail
from starter.commands.output import (
    compact,
    echo_fields,
    echo_model,
    echo_page,
    echo_table,
    json_argument,
    json_option,
    page_options,
    seconds,
    when,
)
from starter.commands.watch import PARKED, exit_code, follow, hints, watch
from workflows.durations import parse_duration


def interval_option(fn: Any) -> Any:
    """``--interval``: seconds between polls of the service."""
    return click.option(
        "--interval",
        type=click.FloatRange(min=0.05),
        default=0.5,
        show_default=True,
        help="Seconds between polls of the service.",
    )(fn)


@click.group("runs")
def runs_group() -> None:
    """Runs of stored definitions: start, list, show, watch, and steer parked steps.

    \b
    Example:
      dagflow runs start order-fulfilment --input '{"order_id": "A-1"}' --wait
      dagflow runs list --status needs_attention
    """


# --- starting and following -------------------------------------------------------------------


@runs_group.command("start")
@click.argument("definition")
@click.option("--input", "input_text", help="The run's input: JSON, @FILE, or - for stdin.")
@click.option("--version", type=click.IntRange(min=1), help="Pin this version (default: current).")
@click.option(
    "--key", help="Idempotency key: starting again with the same key returns the same run."
)
@click.option("--wait", is_flag=True, help="Wait for the run to end; print its output.")
@interval_option
@json_option
@api_options
def start_cmd(
    definition: str,
    input_text: str | None,
    version: int | None,
    key: str | None,
    wait: bool,
    interval: float,
    as_json: bool,
    api: Connection,
) -> None:
    """Start a run of a stored definition; print its id (RUN).

    With --wait it waits for the run to end: it prints the output and exits 0, or prints why
    the run failed and exits 1. A parked step is reported on stderr while it waits.

    \b
    Example:
      dagflow runs start order-fulfilment --input @order.json --key order-A-1 --wait
    """
    run_input = json_argument(input_text, "--input")

    async def start(client: DagflowClient) -> tuple[RunRef, RunDetail | None]:
        ref = await client.runs.start(definition, run_input, version=version, key=key)
        if not wait:
            return ref, None
        return ref, await follow(client, ref.id, interval, _tell_parked(), through_parks=True)

    ref, detail = call(api, start)
    if detail is None:
        if as_json:
            echo_model(ref)
        else:
            click.echo(ref.id)
            if not ref.created:
                click.echo(f"(run {ref.id} was started before with this key)", err=True)
        return
    _report_end(detail, as_json)


def _tell_parked() -> Callable[[RunTrace], None]:
    """Tell people once per park which steps wait for them, while --wait waits."""
    told: set[str] = set()

    def check(trace: RunTrace) -> None:
        parked = {s.step for s in trace.steps if s.status == PARKED}
        for line in hints(trace.id, trace.steps) if parked - told else []:
            click.echo(line, err=True)
        told.clear()
        told.update(parked)

    return check


def _report_end(detail: RunDetail, as_json: bool) -> None:
    code = exit_code(detail.status)
    if as_json:
        echo_model(detail)
    elif code == OK:
        click.echo(compact(detail.output, limit=1_000_000))
    else:
        _echo_failed_steps(detail)
        click.echo(f"run {detail.id} {detail.status}: {detail.error or detail.status}", err=True)
    sys.exit(code)


def _echo_failed_steps(detail: RunDetail) -> None:
    for step in detail.steps:
        said = step.error and step.error in (detail.error or "")
        if step.status in ("failed", PARKED) and step.error and not said:
            click.echo(f"step {step.step} {step.status}: {step.error}", err=True)


@runs_group.command("watch")
@click.argument("run")
@interval_option
@json_option
@api_options
def watch_cmd(run: str, interval: float, as_json: bool, api: Connection) -> None:
    """Watch a run live: each step's status, attempts, time, and for_each progress.

    Redraws until the run ends or parks a step, then says how to resolve the parked step.
    Exits 0 when the run completed, 1 when it failed, was cancelled, timed out or parked.
    Without a terminal, or with --json, it prints one JSON line (a RunTrace) per change,
    then the run as it ended or parked (a RunDetail). RUN is '<definition>/<key>'.

    \b
    Example:
      dagflow runs watch order-fulfilment/order-A-1
      dagflow runs watch order-fulfilment/order-A-1 --json | jq -c .status
    """
    lines = as_json or not sys.stdout.isatty()
    code = call(api, lambda client: watch(client, run, interval, lines, sys.stdout))
    sys.exit(code)


# --- listing and inspecting -------------------------------------------------------------------


@runs_group.command("list")
@click.option("--definition", help="Only runs of this definition.")
@click.option("--status", type=click.Choice(get_args(RunStatusName)), help="Only this status.")
@click.option(
    "--since", metavar="WHEN", help="Started at or after: an ISO time, or an age like 30m or 2d."
)
@page_options
@json_option
@api_options
def list_cmd(
    definition: str | None,
    status: str | None,
    since: str | None,
    limit: int | None,
    cursor: str | None,
    as_json: bool,
    api: Connection,
) -> None:
    """List the tenant's runs, newest first.

    \b
    Example:
      dagflow runs list --definition order-fulfilment --status failed --since 1d
    """
    after = _since(since)
    page = call(
        api,
        lambda client: client.runs.list(
            definition=definition, status=status, started_after=after, limit=limit, cursor=cursor
        ),
    )
    echo_page(
        page,
        as_json,
        ["RUN", "STATUS", "VERSION", "STARTED", "DURATION", "COMMAND"],
        lambda r: [
            r.id,
            r.status,
            str(r.version),
            when(r.started_at),
            _took(r.started_at, r.closed_at),
            r.command or "",
        ],
        empty="no runs",
    )


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.now(UTC) - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(BAD_INPUT, f"--since: {text!r} is neither an ISO time nor an age like 30m or 2d")
    return moment if moment.tzinfo else moment.astimezone()


def _took(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "-"
    if end is None:
        return f"{seconds((datetime.now(UTC) - start).total_seconds())} so far"
    return seconds((end - start).total_seconds())


@runs_group.command("show")
@click.argument("run")
@json_option
@api_options
def show_cmd(run: str, as_json: bool, api: Connection) -> None:
    """Show a run: status, version, input, output or error, and its steps.

    \b
    Example:
      dagflow runs show order-fulfilment/order-A-1
    """
    detail = call(api, lambda client: client.runs.get(run))
    if as_json:
        echo_model(detail)
        return
    fields = [
        ("run", detail.id),
        ("status", detail.status),
        ("definition", f"{detail.definition} version {detail.version}"),
        ("workflow", f"{detail.workflow_id} (run id {detail.run_id or '-'})"),
        ("command", detail.command or "-"),
        ("started", when(detail.started_at)),
        ("closed", when(detail.closed_at)),
        ("duration", _took(detail.started_at, detail.closed_at)),
        ("input", compact(detail.input)),
    ]
    if detail.status == "completed":
        fields.append(("output", compact(detail.output)))
    if detail.error:
        fields.append(("error", detail.error))
    echo_fields(fields)
    click.echo()
    echo_table(
        ["STEP", "KIND", "STATUS", "ATTEMPTS", "ERROR"],
        ([s.step, s.kind, s.status, str(s.attempts), s.error or ""] for s in detail.steps),
        empty="no steps",
    )


@runs_group.command("trace")
@click.argument("run")
@json_option
@api_options
def trace_cmd(run: str, as_json: bool, api: Connection) -> None:
    """Show every step of a run with attempts, start time, duration and last error or note.

    \b
    Example:
      dagflow runs trace order-fulfilment/order-A-1
    """
    trace = call(api, lambda client: client.runs.trace(run))
    if as_json:
        echo_model(trace)
        return
    click.echo(
        f"{trace.id}  version {trace.version}  {trace.status}  "
        f"started {when(trace.started_at)}  took {seconds(trace.duration)}"
    )
    echo_table(
        ["STEP", "KIND", "STATUS", "ATTEMPTS", "STARTED", "DURATION", "ITEMS", "ERROR / NOTE"],
        (
            [
                s.step,
                s.kind,
                s.status,
                str(s.attempts),
                when(s.started_at),
                seconds(s.duration),
                _items(s.items_total, s.items_done, s.items_failed),
                " ".join(
                    x
                    for x in (
                        s.error or "",
                        s.note or "",
                        f"(fallback {s.fallback})" if s.fallback else "",
                    )
                    if x
                ),
            ]
            for s in trace.steps
        ),
        empty="no steps",
    )


def _items(total: int | None, done: int | None, failed: list[int] | None) -> str:
    if total is None:
        return ""
    text = f"{done or 0}/{total}"
    return f"{text} ({len(failed)} failed)" if failed else text


@runs_group.command("errors")
@click.option("--limit", type=click.IntRange(1, 200), help="Errors at most (default 50).")
@json_option
@api_options
def errors_cmd(limit: int | None, as_json: bool, api: Connection) -> None:
    """List the tenant's latest failed or parked steps across its runs, newest runs first.

    \b
    Example:
      dagflow runs errors --limit 20
    """
    errors = call(api, lambda client: client.runs.errors(limit=limit))
    if as_json:
        echo_model(errors)
        return
    echo_table(
        ["RUN", "STEP", "STATUS", "ATTEMPTS", "FINISHED", "ERROR"],
        (
            [e.run, e.step, e.status, str(e.attempts), when(e.finished_at), e.error or ""]
            for e in errors.items
        ),
        empty=f"no errors (in the {errors.runs_scanned} latest failed or parked runs)",
    )


# --- steering a run ---------------------------------------------------------------------------


def _acted(action: Action, as_json: bool, what: str) -> None:
    if as_json:
        echo_model(action)
    else:
        click.echo(f"run {action.id}: {what}")


@runs_group.command("retry")
@click.argument("run")
@click.argument("step")
@click.option("--with", "with_text", help="Overrides of the step's inputs: a JSON object.")
@json_option
@api_options
def retry_cmd(run: str, step: str, with_text: str | None, as_json: bool, api: Connection) -> None:
    """Run a parked step again, optionally with new inputs.

    \b
    Example:
      dagflow runs retry order-fulfilment/order-A-1 charge --with '{"amount": 10}'
    """
    overrides = json_argument(with_text, "--with")
    if overrides is not None and not isinstance(overrides, dict):
        fail(BAD_INPUT, "--with: expected a JSON object of the step's inputs")
    action = call(api, lambda client: client.runs.retry(run, step, overrides))
    _acted(action, as_json, f"step {step} runs again")


@runs_group.command("complete")
@click.argument("run")
@click.argument("step")
@click.option("--output", "output_text", help="The step's output: JSON, @FILE or - (stdin).")
@json_option
@api_options
def complete_cmd(
    run: str, step: str, output_text: str | None, as_json: bool, api: Connection
) -> None:
    """Resolve a parked step as succeeded, with the output an operator gives.

    \b
    Example:
      dagflow runs complete order-fulfilment/order-A-1 charge --output '{"paid": true}'
    """
    output = json_argument(output_text, "--output")
    action = call(api, lambda client: client.runs.complete(run, step, output))
    _acted(action, as_json, f"step {step} completed")


@runs_group.command("skip")
@click.argument("run")
@click.argument("step")
@json_option
@api_options
def skip_cmd(run: str, step: str, as_json: bool, api: Connection) -> None:
    """Resolve a parked step as skipped (its dependents follow their trigger rules).

    \b
    Example:
      dagflow runs skip order-fulfilment/order-A-1 charge
    """
    action = call(api, lambda client: client.runs.skip(run, step))
    _acted(action, as_json, f"step {step} skipped")


@runs_group.command("fail")
@click.argument("run")
@click.option("--reason", help="Why (kept as the run's error).")
@json_option
@api_options
def fail_cmd(run: str, reason: str | None, as_json: bool, api: Connection) -> None:
    """Fail an open run now.

    \b
    Example:
      dagflow runs fail order-fulfilment/order-A-1 --reason "card revoked"
    """
    action = call(api, lambda client: client.runs.fail(run, reason))
    _acted(action, as_json, "failing")


@runs_group.command("send")
@click.argument("run")
@click.argument("event")
@click.option("--payload", "payload_text", help="The event's payload: JSON, @FILE or -.")
@json_option
@api_options
def send_cmd(
    run: str, event: str, payload_text: str | None, as_json: bool, api: Connection
) -> None:
    """Deliver an event to a run's wait steps (`uses: wait` with `event: NAME`).

    \b
    Example:
      dagflow runs send order-fulfilment/order-A-1 approved --payload '{"by": "ana"}'
    """
    payload = json_argument(payload_text, "--payload")
    action = call(api, lambda client: client.runs.send(run, event, payload))
    _acted(action, as_json, f"event {event} delivered")


@runs_group.command("cancel")
@click.argument("run")
@json_option
@api_options
def cancel_cmd(run: str, as_json: bool, api: Connection) -> None:
    """Ask an open run to cancel (running steps are cancelled; the run ends cancelled).

    \b
    Example:
      dagflow runs cancel order-fulfilment/order-A-1
    """
    action = call(api, lambda client: client.runs.cancel(run))
    _acted(action, as_json, "cancelling")


@runs_group.command("rerun")
@click.argument("run")
@click.option("--key", help="The new run's key (default: a random one).")
@json_option
@api_options
def rerun_cmd(run: str, key: str | None, as_json: bool, api: Connection) -> None:
    """Rerun a closed failed run as a new run that reuses the steps that succeeded.

    Prints the new run's id.

    \b
    Example:
      dagflow runs rerun order-fulfilment/order-A-1 --key order-A-1-again
    """
    ref = call(api, lambda client: client.runs.rerun(run, key=key))
    if as_json:
        echo_model(ref)
    else:
        click.echo(ref.id)


COMMANDS = [runs_group]
