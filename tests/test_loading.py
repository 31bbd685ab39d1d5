"""Loading definition text: YAML and JSON alike, duplicate keys, syntax errors as problems."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workflows.loading import (
    MAX_YAML_VALUES,
    DefinitionSyntaxError,
    Syntax,
    detect_syntax,
    load_definition,
    validate_text,
)
from workflows.validation import Problem

DATA = Path(__file__).parent / "data" / "definitions"


def syntax_problem(text: str, filename: str | None = None, syntax: Syntax | None = None) -> str:
    with pytest.raises(DefinitionSyntaxError) as caught:
        load_definition(text, filename=filename, syntax=syntax)
    assert caught.value.problem.path == "definition"
    return caught.value.problem.message


# --- YAML and JSON alike --------------------------------------------------------------------------


def test_yaml_and_json_of_the_same_definition_load_the_same() -> None:
    from_yaml = load_definition((DATA / "order-fulfilment.yaml").read_text(), filename="o.yaml")
    from_json = load_definition((DATA / "order-fulfilment.json").read_text(), filename="o.json")
    assert from_yaml.problems == from_json.problems == []
    assert from_yaml.data == from_json.data
    yaml_result = validate_text((DATA / "order-fulfilment.yaml").read_text())
    json_result = validate_text((DATA / "order-fulfilment.json").read_text())
    assert yaml_result.ok and json_result.ok
    assert yaml_result.definition == json_result.definition


def test_yaml_scalars_follow_the_yaml_1_2_core_schema() -> None:
    text = """
    words: [on, off, yes, no, y, n]
    bools: [true, False, TRUE]
    date: 2024-05-01
    stamp: 2024-05-01T10:00:00Z
    ints: [010, 0o17, 0x1f, -3, 1_000]
    floats: [1e3, .5, -1.5E-2, .inf]
    null_values: [~, null]
    clock: 1:30
    """
    data = load_definition(text.replace("\n    ", "\n")).data
    assert data == {
        "words": ["on", "off", "yes", "no", "y", "n"],
        "bools": [True, False, True],
        "date": "2024-05-01",
        "stamp": "2024-05-01T10:00:00Z",
        "ints": [10, 15, 31, -3, "1_000"],
        "floats": [1000.0, 0.5, -0.015, float("inf")],
        "null_values": [None, None],
        "clock": "1:30",
    }
    assert data == json.loads(json.dumps(data))


def test_anchors_and_aliases_work() -> None:
    text = "base: &retry {max_attempts: 5}\nother: *retry\nmerged: {<<: *retry, backoff: none}\n"
    assert load_definition(text).data == {
        "base": {"max_attempts": 5},
        "other": {"max_attempts": 5},
        "merged": {"max_attempts": 5, "backoff": "none"},
    }


def test_byte_order_mark_is_ignored() -> None:
    assert load_definition('\ufeff{"a": 1}').data == {"a": 1}
    assert load_definition("\ufeffa: 1\n").data == {"a": 1}


# --- choosing the syntax --------------------------------------------------------------------------


def test_syntax_by_extension_then_by_sniffing() -> None:
    assert detect_syntax("{}", "flow.YAML") == "yaml"
    assert detect_syntax("a: 1", "flow.json") == "json"
    assert detect_syntax('  {"a": 1}') == "json"
    assert detect_syntax("a: 1", "flow.txt") == "yaml"


def test_a_json_file_is_read_strictly_as_json() -> None:
    assert "invalid JSON" in syntax_problem("{a: 1}", filename="flow.json")


def test_sniffed_json_that_is_yaml_flow_falls_back_to_yaml() -> None:
    assert load_definition("{name: x, steps: {}}").data == {"name": "x", "steps": {}}


def test_forced_syntax() -> None:
    assert "invalid JSON" in syntax_problem("a: 1", syntax="json")


# --- duplicate keys -------------------------------------------------------------------------------


def test_duplicate_keys_in_yaml_with_path_and_line() -> None:
    text = (
        "name: shop\n"
        "steps:\n"
        "  fetch:\n"
        "    uses: http\n"
        "    with: {url: a, url: b}\n"
        "  fetch:\n"
        "    uses: transform\n"
        "    for_each: [{x: 1, x: 2}]\n"
        "name: shop2\n"
    )
    loaded = load_definition(text)
    assert [str(p) for p in loaded.problems] == [
        "steps.fetch.with: duplicate key 'url' (line 5)",
        "steps: duplicate key 'fetch' (line 6)",
        "steps.fetch.for_each[0]: duplicate key 'x' (line 8)",
        "definition: duplicate key 'name' (line 9)",
    ]
    assert loaded.data["name"] == "shop2"


def test_duplicate_keys_in_json_with_path() -> None:
    text = '{"name": "a", "steps": {"fetch": {"uses": "x"}, "fetch": {"uses": "y", "needs": []}}}'
    loaded = load_definition(text)
    assert loaded.problems == [Problem("steps", "duplicate key 'fetch'")]
    assert loaded.data["steps"]["fetch"] == {"uses": "y", "needs": []}


def test_duplicate_keys_make_the_definition_invalid() -> None:
    text = "name: a\nsteps:\n  a: {uses: transform, with: {value: 1}}\n  a: {uses: transform}\n"
    result = validate_text(text)
    assert result.definition is None
    assert [str(p) for p in result.problems] == [
        "steps: duplicate key 'a' (line 4)",
        "steps.a.with: missing required field 'value'",
    ]


def test_keys_that_differ_in_type_are_not_duplicates() -> None:
    assert load_definition("a: {1: x, '1': y}\n").problems == []


# --- syntax errors --------------------------------------------------------------------------------


def test_yaml_syntax_error_has_line_and_column() -> None:
    message = syntax_problem("name: a\nsteps: [1, 2\n")
    assert message == (
        "invalid YAML: while parsing a flow sequence (line 2), "
        "expected ',' or ']', but got '<stream end>' (line 3, column 1)"
    )


def test_json_syntax_error_has_line_and_column() -> None:
    message = syntax_problem('{\n  "name": "a",\n  "steps": }\n', filename="a.json")
    assert message == "invalid JSON: Expecting value (line 3, column 12)"


def test_several_yaml_documents_are_refused() -> None:
    assert "expected a single document" in syntax_problem("a: 1\n---\nb: 2\n")


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    assert "nested too deeply" in syntax_problem("[" * 100_000, filename="a.json")
    assert "nested too deeply" in syntax_problem("a: " + "[" * 100_000)


def test_alias_bombs_and_recursive_aliases_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    message = syntax_problem("\n".join(lines))
    assert f"more than {MAX_YAML_VALUES:,} values" in message
    assert "refers to a node that contains it" in syntax_problem("a: &x [*x]\n")


def test_validate_text_turns_syntax_errors_into_problems() -> None:
    result = validate_text("name: [", filename="a.yaml")
    assert result.definition is None
    assert len(result.problems) == 1
    assert result.problems[0].path == "definition"
    assert result.problems[0].message.startswith("invalid YAML:")


def test_empty_text_is_not_a_definition() -> None:
    assert [str(p) for p in validate_text("").problems] == [
        "definition: must be a mapping, got nothing"
    ]
