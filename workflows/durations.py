"""Durations as definitions write them: ``500ms``, ``30s``, ``1m30s``, ``2h``, ``1d``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"


def parse_duration(value: Any) -> timedelta:
    """Parse a duration string (or a number of seconds) into a timedelta.

    Args:
        value: ``"30s"``, ``"1h30m"``, ``"250ms"``, an int or float of seconds, or a timedelta.

    Returns:
        The duration.

    Raises:
        ValueError: If the value is not a positive duration in a known unit.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError("not a duration: expected a string like '30s', '5m' or '1h'")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(DURATION_PATTERN, text):
            raise ValueError(
                f"not a duration: {value!r} (use a number and a unit: ms, s, m, h or d, e.g. '30s')"
            )
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    else:
        raise ValueError("not a duration: expected a string like '30s', '5m' or '1h'")
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Format a timedelta in the definition language (``90s`` -> ``1m30s``)."""
    ms = round(value.total_seconds() * 1000)
    if ms % 1000:
        return f"{ms}ms"
    seconds = ms // 1000
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a number and a unit (ms, s, m, h, d), e.g. 30s, 1m30s, 2h.",
            "examples": ["30s", "5m", "1h30m"],
        }
    ),
]
