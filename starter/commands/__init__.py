"""Subcommands of the ``dagflow`` CLI, one module per group of commands."""
