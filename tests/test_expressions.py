"""CEL functions in ``${{ }}``: the core's and cel-go's extension libraries, and nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from workflows.expressions import (
    EXTENSION_FUNCTIONS,
    NATIVE_FUNCTIONS,
    ExpressionError,
    compile_expression,
)

NATIVE_CALLS = {
    "size": "size([1, 2])", "contains": "'abc'.contains('b')", "startsWith": "'ab'.startsWith('a')",
    "endsWith": "'ab'.endsWith('b')", "matches": "'ab'.matches('^a')", "string": "string(1)",
    "int": "int('7')", "uint": "uint(1)", "double": "double(1)", "bytes": "bytes('a')",
    "timestamp": "timestamp('2026-01-01T00:00:00Z')", "duration": "duration('90s')",
    "type": "type(1) == int", "dyn": "dyn(1)",
    "getFullYear": "timestamp('2026-03-04T05:06:07Z').getFullYear()",
    "getMonth": "timestamp('2026-03-04T05:06:07Z').getMonth()",
    "getDate": "timestamp('2026-03-04T05:06:07Z').getDate()",
    "getDayOfMonth": "timestamp('2026-03-04T05:06:07Z').getDayOfMonth()",
    "getDayOfWeek": "timestamp('2026-03-04T05:06:07Z').getDayOfWeek()",
    "getDayOfYear": "timestamp('2026-03-04T05:06:07Z').getDayOfYear()",
    "getHours": "duration('2h').getHours()", "getMinutes": "duration('2h').getMinutes()",
    "getSeconds": "duration('2m').getSeconds()",
    "getMilliseconds": "timestamp('2026-03-04T05:06:07.5Z').getMilliseconds()",
    "of": "optional.of(1).hasValue()", "ofNonZeroValue": "optional.ofNonZeroValue(0).hasValue()",
    "none": "optional.none().orValue(3)", "orValue": "optional.none().orValue(3)",
    "hasValue": "optional.of(1).hasValue()", "value": "optional.of(1).value()",
    "or": "optional.none().or(optional.of(2)).value()",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(NATIVE_FUNCTIONS))
def test_every_native_function_named_runs(name: str) -> None:
    expression = compile_expression(NATIVE_CALLS[name])
    expression.evaluate({})  # raises if the runtime does not know it


@pytest.mark.parametrize(
    ("source", "scope", "expected"),
    [
        ("input.name.lowerAscii()", {"input": {"name": "ÅB-c"}}, "Åb-c"),
        ("input.csv.split(',').map(s, s.trim())", {"input": {"csv": "a, b"}}, ["a", "b"]),
        ("input.tags.join('+')", {"input": {"tags": ["x", "y"]}}, "x+y"),
        ("math.greatest([3, input.n])", {"input": {"n": 9}}, 9),
        ("max(input.xs) - min(input.xs)", {"input": {"xs": [4, 1, 7]}}, 6),
        ("base64.encode(bytes(input.s))", {"input": {"s": "hi"}}, "aGk="),
        ("lists.range(3)", {}, [0, 1, 2]),
        ("input.xs.sort().reverse()", {"input": {"xs": [2, 3, 1]}}, [3, 2, 1]),
        ("input.xs.contains(2) && 'abc'.contains('b')", {"input": {"xs": [2]}}, True),
        ("input.s.replace('-', '_').upperAscii()", {"input": {"s": "a-b"}}, "A_B"),
    ],
)
def test_extension_functions(source: str, scope: dict[str, Any], expected: Any) -> None:
    expression = compile_expression(source)
    assert expression.extensions, "the extension functions it calls are known at compile time"
    assert "math" not in expression.names and "lists" not in expression.names
    assert expression.evaluate(scope) == expected


def test_an_unknown_function_does_not_compile() -> None:
    with pytest.raises(ExpressionError, match=r"unknown function lowerAsci\(\)"):
        compile_expression("input.s.lowerAsci()")
    with pytest.raises(ExpressionError, match=r"unknown function now\(\)"):
        compile_expression("now()")


def test_expressions_without_extensions_take_the_plain_path() -> None:
    expression = compile_expression("size(input.xs) + 1")
    assert expression.extensions == ()
    assert expression.evaluate({"input": {"xs": [1]}}) == 2
    assert {"lowerAscii", "split", "math.greatest"} <= set(EXTENSION_FUNCTIONS)
