"""Output of the resource commands: aligned tables and readable times for people, the API
models' JSON for scripts; and reading JSON arguments."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import BaseModel

from starter.api.common import Page
from starter.commands.exits import BAD_INPUT, fail

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def json_option(fn: F) -> F:
    """``--json``: print the service's answer as JSON (the API model) instead of text."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print the answer as JSON, for scripts."
    )(fn)


def page_options(fn: F) -> F:
    """``--limit`` and ``--cursor`` of a list."""
    fn = click.option(
        "--cursor", help="Continue a list where the last page ended (its next_cursor)."
    )(fn)
    return click.option(
        "--limit", type=click.IntRange(1, 200), help="Items per page (default 50)."
    )(fn)


def echo_model(model: BaseModel) -> None:
    """Print one API model as indented JSON."""
    click.echo(model.model_dump_json(indent=2))


def echo_json(value: Any) -> None:
    """Print a JSON value, indented."""
    click.echo(json.dumps(value, indent=2, default=str))


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Lines of a table with left-aligned columns; the last column is not padded."""
    body = [list(row) for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), *body]
    ]


def echo_table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> None:
    """Print a table, or ``empty`` (on stderr) when there are no rows."""
    rows = list(rows)
    if not rows:
        click.echo(empty, err=True)
        return
    for line in table(headers, rows):
        click.echo(line)


def echo_fields(fields: Sequence[tuple[str, str]]) -> None:
    """Print ``name  value`` lines with the values aligned."""
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        click.echo(f"{name.ljust(width)}  {value}")


def echo_page(
    page: Page[T],
    as_json: bool,
    headers: Sequence[str],
    row: Callable[[T], Sequence[str]],
    empty: str,
) -> None:
    """Print one page of a list: its JSON, or a table of ``row`` of each item and, when there
    is a next page, how to get it."""
    if as_json:
        echo_model(page)
        return
    echo_table(headers, (row(item) for item in page.items), empty=empty)
    next_page(page.next_cursor)


def next_page(cursor: str | None) -> None:
    """Tell people how to get the next page, if there is one."""
    if cursor is not None:
        click.echo(f"(more: pass --cursor {cursor})", err=True)


def when(value: datetime | None) -> str:
    """A timestamp in local time to the second, or ``-``."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def seconds(value: float | None) -> str:
    """A duration for people: ``0.42s``, ``12.3s``, ``3m04s``, ``2h05m``; ``-`` when unknown."""
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f}s"
    if value < 60:
        return f"{value:.1f}s"
    whole = int(value)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def yes_no(value: bool) -> str:
    """``yes`` or ``no``."""
    return "yes" if value else "no"


def compact(value: Any, limit: int = 200) -> str:
    """A JSON value on one line, cut at ``limit`` characters."""
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_argument(text: str | None, flag: str) -> Any:
    """The JSON value of a flag: inline JSON, ``@FILE`` to read a file, or ``-`` for stdin.

    Exits 2 naming the flag if the text is not JSON or the file cannot be read.
    """
    if text is None:
        return None
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as e:
            fail(BAD_INPUT, f"{flag}: cannot read {text[1:]}: {e.strerror or e}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        fail(BAD_INPUT, f"{flag}: not JSON: {e.msg} (line {e.lineno}, column {e.colno})")


def read_text(path: str) -> str:
    """A file's text (``-`` reads stdin); exits 2 if it cannot be read."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as e:
        fail(BAD_INPUT, f"cannot read {path}: {e.strerror or e}")
    except UnicodeDecodeError:
        fail(BAD_INPUT, f"cannot read {path}: not UTF-8 text")
