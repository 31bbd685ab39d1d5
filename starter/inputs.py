"""A run's input checked against its definition's ``input`` JSON Schema (CLI and service)."""

from __future__ import annotations

from typing import Any

import jsonschema

from workflows.definition import Definition
from workflows.validation import Problem


def input_violations(definition: Definition, value: Any) -> list[Problem]:
    """Every way ``value`` breaks the definition's ``input`` schema, each at its path.

    Paths start with ``input`` (``input.order_id``, ``input.items[2].sku``); a missing input
    is checked as ``{}``. None when the definition has no ``input`` schema.
    """
    if definition.input is None:
        return []
    cls = jsonschema.validators.validator_for(definition.input)
    try:
        errors = list(cls(definition.input).iter_errors(value if value is not None else {}))
    except jsonschema.SchemaError as error:
        return [Problem(path="input", message=f"the definition's input schema is invalid: {error}")]
    found = {(f"input{e.json_path[1:]}", e.message) for e in errors}
    return [Problem(path=path, message=message) for path, message in sorted(found)]


def input_problems(definition: Definition, value: Any) -> list[str]:
    """Every way ``value`` breaks the definition's ``input`` schema, as ``input.path: why``."""
    return [str(problem) for problem in input_violations(definition, value)]
