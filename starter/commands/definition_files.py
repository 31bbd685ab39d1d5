"""``dagflow schema`` and ``dagflow validate``: the definition language from the command line."""

from __future__ import annotations

import json
import sys

import click

from starter.files import known_kinds, validate_file
from workflows.definition import definition_json_schema

INVALID = 2
"""Exit status when a file is invalid, missing or unreadable."""


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
