"""``${{ }}`` expressions: CEL inside, typed when a string is one expression, text otherwise.

Everything here is pure and deterministic, so the interpreter evaluates expressions inside the
workflow and replays them identically. Compiled programs are cached by source.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import cel
from cel.stdlib import EXTENSIONS

SCOPE_NAMES = frozenset({"input", "steps", "item", "index", "run", "params"})

NATIVE_FUNCTIONS = frozenset(
    {
        "size", "contains", "startsWith", "endsWith", "matches",
        "string", "int", "uint", "double", "bytes", "timestamp", "duration", "type", "dyn",
        "getFullYear", "getMonth", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear",
        "getHours", "getMinutes", "getSeconds", "getMilliseconds",
        "of", "ofNonZeroValue", "none", "orValue", "hasValue", "value", "or",
    }
)  # fmt: skip
"""Functions CEL's core (the Rust runtime) has, by the name a call uses; ``has`` and the list
macros are syntax, not functions."""
EXTENSION_FUNCTIONS: dict[str, Any] = {
    name: function for library in EXTENSIONS.values() for name, function in library.items()
}
"""cel-go's extension libraries as the ``cel`` package provides them (pure functions):
``lowerAscii``, ``split``, ``join``, ``math.greatest``, ``base64.encode``, ``lists.range`` ...,
by full name. An expression gets the ones it calls."""
_EXTENSIONS_BY_CALL: dict[str, tuple[str, ...]] = {}
for _name in EXTENSION_FUNCTIONS:
    _call = _name.rsplit(".", 1)[-1]
    _EXTENSIONS_BY_CALL[_call] = (*_EXTENSIONS_BY_CALL.get(_call, ()), _name)
NAMESPACES = frozenset({"optional", *(n.split(".")[0] for n in EXTENSION_FUNCTIONS if "." in n)})
"""Names before a dot in a function call (``math.greatest``), which CEL reports as variables."""

_STEP_DOT = re.compile(r"\bsteps\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_STEP_INDEX = re.compile(r"\bsteps\s*\[\s*(?:\"([^\"]*)\"|'([^']*)')\s*\]")
_STEPS_WORD = re.compile(r"\bsteps\b")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*$")
_MACRO_VAR = re.compile(
    r"\.\s*(?:map|filter|all|exists|exists_one|transformList|transformMap)\s*\(\s*"
    r"([A-Za-z_][A-Za-z0-9_]*)\s*,(?:\s*([A-Za-z_][A-Za-z0-9_]*)\s*,)?"
)


class ExpressionError(Exception):
    """An expression did not compile or could not be evaluated."""

    def __init__(self, expression: str, reason: str) -> None:
        super().__init__(f"{reason} (in ${{{{ {expression} }}}})")
        self.expression = expression
        self.reason = reason


@dataclass(frozen=True)
class Expression:
    """One compiled CEL expression with what it refers to."""

    source: str
    program: cel.Program = field(repr=False, compare=False)
    names: frozenset[str]
    """Top-level names it uses that are not bound by a macro."""
    step_refs: frozenset[str] | None
    """Step ids it reads through ``steps``; None when it indexes ``steps`` dynamically."""
    path: tuple[str, ...] | None = None
    """The keys it follows when it is only a path of names (``input.items``), else None."""
    extensions: tuple[str, ...] = ()
    """The extension functions it calls (full names), registered when it runs."""

    def evaluate(self, scope: dict[str, Any]) -> Any:
        """Evaluate in ``scope``; raise :class:`ExpressionError` with the reason on failure.

        Only the names the expression uses are handed to CEL, which converts every value it
        is given: a big ``input`` costs nothing to expressions that do not read it. A plain
        path (``input.items``, ``steps.each.output``, ``item``) that leads to a value is
        looked up without CEL, which would convert the value there and back (a 100,000-item
        list took over a second); any other case, a missing key included, goes to CEL.
        """
        if self.path is not None:
            found = _follow(scope, self.path)
            if found is not _MISSING:
                return found
        used = {name: scope[name] for name in self.names if name in scope}
        try:
            if not self.extensions:
                return to_json(self.program.execute(used))
            context = cel.Context()
            for name in self.extensions:
                context.add_function(name, EXTENSION_FUNCTIONS[name])
            context.update(used)
            return to_json(self.program.execute(context))
        except KeyError as e:
            raise ExpressionError(self.source, f"no such key: {e.args[0]!r}") from None
        except ZeroDivisionError:
            raise ExpressionError(self.source, "division by zero") from None
        except Exception as e:
            reason = str(e).split(". Check that")[0] or type(e).__name__
            raise ExpressionError(self.source, reason) from None


_MISSING = object()


def _follow(scope: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The JSON value at ``path`` in ``scope``, or ``_MISSING`` when a key is not there."""
    value: Any = scope
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value if _plain(value) else _MISSING


def _plain(value: Any) -> bool:
    """Whether CEL would hand ``value`` back unchanged (JSON scalars, lists, string-keyed maps);
    only the top level is checked for containers, as scope values are JSON data."""
    return value is None or isinstance(value, str | bool | int | float | list | dict)


@functools.lru_cache(maxsize=16384)
def compile_expression(source: str) -> Expression:
    """Compile CEL source (without the ``${{ }}``); the most recent programs are cached."""
    text = source.strip()
    if not text:
        raise ExpressionError(source, "empty expression")
    try:
        program = cel.compile(text)
    except Exception as e:
        lines = str(e).splitlines()
        reason = lines[0] if lines else type(e).__name__
        reason = reason.replace(f"Failed to parse expression '{text}': ", "")
        raise ExpressionError(text, f"does not compile: {reason}") from None
    names = set(program.variables())
    extensions: tuple[str, ...] = ()
    if "(" in text:
        names -= {n for pair in _MACRO_VAR.findall(text) for n in pair if n}
        extensions = _extensions(text, program.functions())
        names -= NAMESPACES
    path = None
    if _PATH.match(text):
        keys = tuple(k.strip() for k in text.split("."))
        path = keys if keys[0] in names else None
    return Expression(
        text,
        program,
        frozenset(names),
        _step_refs(text) if "steps" in names else frozenset(),
        path,
        extensions,
    )


def _extensions(text: str, called: list[str]) -> tuple[str, ...]:
    """The extension functions an expression calls; an unknown function does not compile."""
    found: list[str] = []
    for name in called:
        if name in _EXTENSIONS_BY_CALL:  # also ``contains``: the core's is for strings only
            found += _EXTENSIONS_BY_CALL[name]
        elif name[:1] not in ("_", "@", "!") and name not in NATIVE_FUNCTIONS:
            raise ExpressionError(text, f"does not compile: unknown function {name}()")
    return tuple(found)


def _step_refs(text: str) -> frozenset[str] | None:
    """Steps named as ``steps.x`` or ``steps["x"]``; None if ``steps`` is used any other way."""
    dotted = _STEP_DOT.findall(text)
    indexed = [a or b for a, b in _STEP_INDEX.findall(text)]
    if len(dotted) + len(indexed) != len(_STEPS_WORD.findall(text)):
        return None
    return frozenset(dotted) | frozenset(indexed)


def _split(text: str) -> list[str | Expression]:
    """Split a string into literal text and compiled expressions."""
    parts: list[str | Expression] = []
    pos = 0
    while True:
        start = text.find("${{", pos)
        if start < 0:
            break
        end = _closing(text, start + 3)
        if end < 0:
            raise ExpressionError(text[start + 3 :].strip(), "no closing '}}'")
        if start > pos:
            parts.append(text[pos:start])
        parts.append(compile_expression(text[start + 3 : end]))
        pos = end + 2
    if pos < len(text):
        parts.append(text[pos:])
    return parts


def _closing(text: str, i: int) -> int:
    """Index of the ``}}`` that closes an expression starting at ``i`` (skips strings, maps)."""
    depth = 0
    quote = ""
    n = len(text)
    while i < n:
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            if depth == 0 and i + 1 < n and text[i + 1] == "}":
                return i
            depth -= 1
        i += 1
    return -1


@dataclass(frozen=True)
class Template:
    """A string with ``${{ }}`` parts, compiled once."""

    parts: tuple[str | Expression, ...]

    @functools.cached_property
    def expressions(self) -> list[Expression]:
        return [p for p in self.parts if isinstance(p, Expression)]

    @functools.cached_property
    def single(self) -> Expression | None:
        """The expression when the string is exactly one ``${{ }}`` (padding allowed)."""
        exprs = self.expressions
        if len(exprs) == 1 and all(isinstance(p, Expression) or not p.strip() for p in self.parts):
            return exprs[0]
        return None

    def render(self, scope: dict[str, Any]) -> Any:
        single = self.single
        if single is not None:
            return single.evaluate(scope)
        return "".join(p if isinstance(p, str) else to_text(p.evaluate(scope)) for p in self.parts)


@functools.lru_cache(maxsize=16384)
def template(text: str) -> Template:
    """Compile a string that may contain ``${{ }}`` parts (the most recent are cached)."""
    return Template(tuple(_split(text)))


def has_expression(value: Any) -> bool:
    """Whether a value (or anything nested in it) contains ``${{``."""
    if isinstance(value, str):
        return "${{" in value
    if isinstance(value, dict):
        return any(has_expression(v) for v in value.values())
    if isinstance(value, list):
        return any(has_expression(v) for v in value)
    return False


def strings_with_expressions(value: Any, out: list[str] | None = None) -> list[str]:
    """Every string containing ``${{`` nested in ``value`` (as :func:`iter_strings`, without
    the paths, and cheaper: the interpreter calls it once per step)."""
    if out is None:
        out = []
    kind = type(value)
    if kind is str:
        if "${{" in value:
            out.append(value)
    elif kind is dict:
        for v in value.values():
            strings_with_expressions(v, out)
    elif kind is list:
        for v in value:
            strings_with_expressions(v, out)
    elif kind in _SCALARS or value is None:
        pass
    elif isinstance(value, str):
        if "${{" in value:
            out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            strings_with_expressions(v, out)
    elif isinstance(value, list):
        for v in value:
            strings_with_expressions(v, out)
    return out


_SCALARS = frozenset({int, float, bool})
"""Types that hold no strings (checked by ``type()``: in the workflow sandbox ``isinstance``
goes through a Python wrapper and costs far more)."""


def iter_strings(value: Any, path: str) -> list[tuple[str, str]]:
    """Every string containing ``${{`` nested in ``value``, with its path."""
    out: list[tuple[str, str]] = []
    if isinstance(value, str):
        if "${{" in value:
            out.append((path, value))
    elif isinstance(value, dict):
        for k, v in value.items():
            out.extend(iter_strings(v, f"{path}.{k}"))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(iter_strings(v, f"{path}[{i}]"))
    return out


def render(value: Any, scope: dict[str, Any]) -> Any:
    """Render every ``${{ }}`` nested in ``value`` (dict keys are left as written)."""
    kind = type(value)
    if kind is str:
        return template(value).render(scope) if "${{" in value else value
    if kind is dict:
        return {k: render(v, scope) for k, v in value.items()}
    if kind is list:
        return [render(v, scope) for v in value]
    if kind in _SCALARS or value is None:
        return value
    if isinstance(value, str):
        return template(value).render(scope) if "${{" in value else value
    if isinstance(value, dict):
        return {k: render(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, scope) for v in value]
    return value


def condition(value: bool | str, scope: dict[str, Any]) -> bool:
    """Evaluate an ``if``: a bool, a ``${{ }}`` string, or bare CEL (as GitHub Actions allows)."""
    if isinstance(value, bool):
        return value
    result = (template(value) if "${{" in value else Template((compile_expression(value),))).render(
        scope
    )
    if not isinstance(result, bool):
        raise ExpressionError(value, f"condition must be a bool, got {type(result).__name__}")
    return result


def to_json(value: Any) -> Any:
    """Turn a CEL result into plain JSON data (timestamps become RFC 3339 strings)."""
    if value is None or type(value) in _PLAIN or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, cel.OptionalValue):
        return to_json(value.value()) if value.has_value() else None
    return str(value)


_PLAIN = frozenset({str, int, float, bool})


def to_text(value: Any) -> str:
    """How a value reads when interpolated into text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=False)
    return str(value)
