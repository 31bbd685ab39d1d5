"""The ``dagflow`` command line."""

from __future__ import annotations

import click

from starter.commands import definition_files, engine


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="dagflow")
def main() -> None:
    """dagflow: stored DAG workflow definitions, run durably on Temporal."""


for _command in (*definition_files.COMMANDS, *engine.COMMANDS):
    main.add_command(_command)
