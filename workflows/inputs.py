"""A run's input with the ``default`` values of its definition's ``input`` schema filled in.

JSON Schema treats ``default`` as an annotation; dagflow applies it, as GitHub Actions does
for workflow inputs: a property that the input leaves out takes the schema's default, in
nested objects too. The run's ``input`` (in expressions and in the trace) is the filled one.
Pure and deterministic, so the workflow applies it itself and every way of starting a run
(CLI, starter, commands, ``workflow`` steps) gets the same input.
"""

from __future__ import annotations

import copy
from typing import Any


def with_defaults(schema: Any, value: Any) -> Any:
    """``value`` with the schema's defaults filled in (a new value; ``value`` is unchanged).

    A missing input (None) of an object schema becomes an object when any property has a
    default. Only ``properties`` are followed: ``oneOf``/``anyOf``/``$ref`` branches are
    left alone, since which branch applies is not known before validation.
    """
    if not isinstance(schema, dict):
        return value
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return value
    if value is None and _has_defaults(properties):
        value = {}
    if not isinstance(value, dict):
        return value
    filled = dict(value)
    for name, prop in properties.items():
        if name in filled:
            filled[name] = with_defaults(prop, filled[name])
        elif isinstance(prop, dict) and "default" in prop:
            filled[name] = copy.deepcopy(prop["default"])
        elif isinstance(prop, dict) and _has_defaults(prop.get("properties")):
            filled[name] = with_defaults(prop, None)
    return filled


def _has_defaults(properties: Any) -> bool:
    if not isinstance(properties, dict):
        return False
    return any(
        isinstance(prop, dict) and ("default" in prop or _has_defaults(prop.get("properties")))
        for prop in properties.values()
    )
