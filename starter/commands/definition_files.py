"""``dagflow schema`` and ``dagflow validate``: the definition language from the command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from workflows.definition import BUILTIN_KINDS, definition_json_schema
from workflows.loading import validate_text
from workflows.validation import Problem

INVALID = 2
"""Exit status when a file is invalid, missing or unreadable."""
STDIN = "-"


@dataclass(frozen=True)
class FileReport:
    """The outcome of validating one file."""

    file: str
    problems: list[Problem]
    error: str | None = None
    """Why the file could not be read, if it could not."""
    steps: int = 0

    @property
    def ok(self) -> bool:
        """Whether the file was read and is a valid definition."""
        return self.error is None and not self.problems

    def lines(self) -> list[str]:
        """The report as ``FILE: ...`` lines."""
        if self.error is not None:
            return [f"{self.file}: {self.error}"]
        if self.ok:
            return [f"{self.file}: ok ({self.steps} steps)"]
        return [f"{self.file}: {problem}" for problem in self.problems]

    def as_json(self) -> dict[str, Any]:
        """The report as JSON data."""
        out: dict[str, Any] = {"file": self.file, "ok": self.ok}
        if self.error is not None:
            out["error"] = self.error
        if self.ok:
            out["steps"] = self.steps
        out["problems"] = [{"path": p.path, "message": p.message} for p in self.problems]
        return out


def validate_file(name: str, known_kinds: Collection[str] | None) -> FileReport:
    """Read one definition file (``-`` for standard input) and validate it.

    Args:
        name: The file's path, or ``-``.
        known_kinds: Step kinds that exist; None accepts any kind.

    Returns:
        Its report; a file that cannot be read has ``error`` set.
    """
    try:
        text = sys.stdin.read() if name == STDIN else Path(name).read_text(encoding="utf-8")
    except OSError as error:
        return FileReport(name, [], error=f"cannot read: {error.strerror or error}")
    except UnicodeDecodeError:
        return FileReport(name, [], error="cannot read: not UTF-8 text")
    filename = None if name == STDIN else Path(name).name
    result = validate_text(text, filename=filename, known_kinds=known_kinds)
    steps = len(result.definition.steps) if result.definition is not None else 0
    return FileReport(name, result.problems, steps=steps)


def known_kinds() -> Collection[str]:
    """The step kinds that exist here: the plugin registry's, or the built-in ones without it."""
    try:
        from activities.registry import known_kinds as registry_kinds
    except ImportError:
        return BUILTIN_KINDS
    return registry_kinds()


@click.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of definitions, for editors and other tools.

    \b
    Example:
      dagflow schema > dagflow.schema.json
      # then in VS Code's YAML extension: "yaml.schemas": {"dagflow.schema.json": "flows/*.yaml"}
    """
    click.echo(json.dumps(definition_json_schema(), indent=2))


@click.command("validate")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report on stdout.")
def validate_cmd(files: tuple[str, ...], as_json: bool) -> None:
    """Check definition files (YAML or JSON; - reads stdin) and report every problem.

    Valid files print "FILE: ok (N steps)"; each problem prints as "FILE: path: message" on
    stderr. Exits 0 when every file is valid, 2 otherwise.

    \b
    Examples:
      dagflow validate order.yaml
      dagflow validate flows/*.yaml --json
    """
    kinds = known_kinds()
    reports = [validate_file(name, kinds) for name in files]
    all_ok = all(report.ok for report in reports)
    if as_json:
        files_json = [report.as_json() for report in reports]
        click.echo(json.dumps({"ok": all_ok, "files": files_json}, indent=2))
    else:
        for report in reports:
            for line in report.lines():
                click.echo(line, err=not report.ok)
    if not all_ok:
        sys.exit(INVALID)


COMMANDS = [schema_cmd, validate_cmd]
