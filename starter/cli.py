"""The ``dagflow`` command line."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Iterable
from typing import Any

import click

MODULES = (
    "starter.commands.definition_files",
    "starter.commands.engine",
    "starter.commands.service",
    "starter.commands.definitions",
    "starter.commands.runs",
    "starter.commands.bindings",
    "starter.commands.admin",
)
"""The modules whose ``COMMANDS`` make up ``dagflow``, in this order."""

SERVICE_COMMANDS = {
    "definitions": "starter.commands.definitions",
    "runs": "starter.commands.runs",
    "bindings": "starter.commands.bindings",
    "commands": "starter.commands.bindings",
    "tenants": "starter.commands.admin",
    "keys": "starter.commands.admin",
}
"""Commands that only call the starter service, and their modules: ``dagflow runs ...`` loads
its module alone, not the ones that load Temporal's SDK (a second less per call)."""


class Commands(click.Group):
    """The top group: loads the modules of its commands when they are first needed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: set[str] = set()

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load(MODULES)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            module = SERVICE_COMMANDS.get(cmd_name)
            self._load([module] if module else MODULES)
        return super().get_command(ctx, cmd_name)

    def _load(self, modules: Iterable[str]) -> None:
        for name in modules:
            if name not in self._loaded:
                self._loaded.add(name)
                for command in importlib.import_module(name).COMMANDS:
                    self.add_command(command)


@click.group(
    cls=Commands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="dagflow")
def cli() -> None:
    """dagflow: stored DAG workflow definitions, run durably on Temporal.

    \b
    Example:
      dagflow dev                                   # a local stack and an example run
      dagflow definitions push order.yaml           # store a definition in the service
      dagflow runs start order-fulfilment --wait    # run it
    """


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
