"""``dagflow definitions graph``: a definition's DAG, or a run's coloured by step status, as an
SVG picture or Mermaid text (:mod:`starter.graph`)."""

from __future__ import annotations

from pathlib import Path

import click

from starter.commands.connection import Connection, api_options, call
from starter.commands.exits import BAD_INPUT, fail
from starter.files import DefinitionFileError, known_kinds, read_definition
from starter.graph import mermaid, svg

MERMAID_SUFFIXES = (".mmd", ".mermaid")
"""An output file with one of these suffixes gets Mermaid text unless --format says."""


@click.command("graph")
@click.argument("name", required=False)
@click.option(
    "--run", "run", metavar="RUN", help="Colour by the steps of this run (KEY or NAME/KEY)."
)
@click.option("--version", type=click.IntRange(min=1), help="Draw this version, not the current.")
@click.option(
    "--format",
    "format_",
    type=click.Choice(["svg", "mermaid"]),
    help="svg (default) or mermaid text; an -o FILE ending .mmd means mermaid.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE, not stdout.",
)
@click.option(
    "--file",
    "file",
    metavar="FILE",
    help="Draw a local definition file (YAML or JSON; - reads stdin) without the service.",
)
@click.option(
    "--instance",
    is_flag=True,
    help="An instance definition (needs an instance key); not with --run.",
)
@api_options
def graph_cmd(
    name: str | None,
    run: str | None,
    version: int | None,
    format_: str | None,
    output: Path | None,
    file: str | None,
    instance: bool,
    api: Connection,
) -> None:
    """Draw a definition's DAG as SVG (or Mermaid text): one box per step with its kind, an
    arrow per need, dashed arrows to fallbacks. With --run, boxes are coloured by the run's
    step statuses and show attempts and for_each items, with a legend.

    NAME is a stored definition (current version, or --version); --file draws a local file
    instead and needs no service. The picture goes to stdout unless -o names a file.

    \b
    Example:
      dagflow definitions graph order-fulfilment -o order.svg
      dagflow definitions graph order-fulfilment --run order-A-1001 -o run.svg
      dagflow definitions graph order-fulfilment --version 2 --format mermaid
      dagflow definitions graph --file examples/order-fulfilment.yaml -o order.svg
    """
    fmt = format_ or (
        "mermaid" if output is not None and output.suffix in MERMAID_SUFFIXES else "svg"
    )
    if file is not None:
        if name is not None or run is not None or version is not None or instance:
            fail(
                BAD_INPUT, "--file draws a local file: give no NAME, --run, --version or --instance"
            )
        text = _draw_file(file, fmt)
    elif run is not None:
        if version is not None or instance:
            fail(BAD_INPUT, "a run pins its version: --run takes no --version or --instance")
        run_id = _run_id(name, run)
        text = call(api, lambda client: client.runs.graph(run_id, format=fmt))
    elif name is not None:
        text = call(
            api,
            lambda client: (client.instance.definitions if instance else client.definitions).graph(
                name, version=version, format=fmt
            ),
        )
    else:
        fail(BAD_INPUT, "name a definition (NAME), a run (--run NAME/KEY) or a file (--file)")
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as e:
        fail(BAD_INPUT, f"cannot write {output}: {e.strerror or e}")
    click.echo(f"wrote {output}", err=True)


def _run_id(name: str | None, run: str) -> str:
    """``NAME/KEY`` from NAME and --run KEY, or from --run NAME/KEY."""
    if "/" in run:
        definition = run.split("/", 1)[0]
        if name is not None and name != definition:
            fail(BAD_INPUT, f"run {run!r} is a run of {definition!r}, not of {name!r}")
        return run
    if name is None:
        fail(BAD_INPUT, f"--run {run}: give NAME too, or --run NAME/{run}")
    return f"{name}/{run}"


def _draw_file(file: str, fmt: str) -> str:
    try:
        definition = read_definition(Path(file), known_kinds())
    except DefinitionFileError as e:
        fail(BAD_INPUT, "\n".join(e.problems))
    return mermaid(definition) if fmt == "mermaid" else svg(definition)


COMMANDS = [graph_cmd]
"""For the ``definitions`` group."""
