"""Input schema defaults: filled where the input leaves a property out, nowhere else."""

from __future__ import annotations

from typing import Any

from workflows.inputs import with_defaults

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "a": {"type": "integer", "default": 1},
        "b": {"type": "object", "properties": {"c": {"type": "string", "default": "x"}}},
        "d": {"type": "string"},
    },
}


def test_missing_properties_take_their_defaults_nested_too() -> None:
    assert with_defaults(SCHEMA, {"d": "y"}) == {"a": 1, "b": {"c": "x"}, "d": "y"}
    assert with_defaults(SCHEMA, None) == {"a": 1, "b": {"c": "x"}}


def test_given_values_win_and_the_input_is_not_changed() -> None:
    given = {"a": 0, "b": {"c": None}}
    assert with_defaults(SCHEMA, given) == {"a": 0, "b": {"c": None}}
    assert given == {"a": 0, "b": {"c": None}}
    default_list: dict[str, Any] = {"properties": {"l": {"default": []}}}
    first = with_defaults(default_list, {})
    first["l"].append(1)
    assert with_defaults(default_list, {}) == {"l": []}  # each run gets its own copy


def test_no_schema_or_no_defaults_leaves_the_input_alone() -> None:
    assert with_defaults(None, None) is None
    assert with_defaults({"type": "object", "properties": {"d": {}}}, None) is None
    assert with_defaults(SCHEMA, [1, 2]) == [1, 2]  # not an object: validation says so
    assert with_defaults({"type": "string"}, "s") == "s"
