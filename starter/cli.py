"""The ``dagflow`` command line."""

from __future__ import annotations

import logging
import os
import sys

import click

from starter.commands import definition_files, engine, service


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="dagflow")
def cli() -> None:
    """dagflow: stored DAG workflow definitions, run durably on Temporal."""


for _command in (*definition_files.COMMANDS, *engine.COMMANDS, *service.COMMANDS):
    cli.add_command(_command)


def main() -> None:
    """Run the CLI, then leave without interpreter teardown.

    Temporal's Rust runtime keeps threads that can abort CPython's finalisation
    (temporalio/sdk-python#300), so once the command is done and output is flushed, the
    process exits straight away with the command's exit code.
    """
    try:
        cli.main(prog_name="dagflow")
        code = 0
    except SystemExit as e:
        code = _exit_code(e.code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
