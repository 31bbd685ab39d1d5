"""Exit statuses every ``dagflow`` command shares, and :func:`fail` to leave with one.

This module imports nothing heavy, so commands that only talk to the starter service start
fast (``starter.commands.engine`` re-exports them).
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

OK = 0
"""The command did what it was asked."""
RUN_FAILED = 1
"""The run it waited for or watched failed, was cancelled, timed out (or parked a step)."""
BAD_INPUT = 2
"""Bad flags, files or input, or the service refused the request (a 4xx answer)."""
UNREACHABLE = 3
"""Temporal or the starter service does not answer (refused, timed out, 5xx)."""


def fail(code: int, message: str) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code``."""
    click.echo(message, err=True)
    sys.exit(code)
