"""Validation of a definition: every problem at once, each with a path and a human reason.

:func:`validate_definition` runs the pydantic models (the one source of truth for shapes) and
then the checks that need the whole definition: kinds, ``needs``, cycles, fallbacks, JSON
Schemas and expressions. Those checks read the raw data leniently, so a step that fails its
model never hides the problems of the others. Paths read like ``steps.charge.needs[0]``,
``steps.charge.with.url``, ``defaults.retry.backoff`` or ``output``; problems of the document
as a whole have the path ``definition``.
"""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Annotated, Any, Union, get_args, get_origin

from jsonschema.validators import Draft202012Validator, validator_for
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from workflows.definition import (
    BUILTIN_KINDS,
    BUILTIN_WITH,
    EXPR_PATTERN,
    NAME_PATTERN,
    STEP_ID_PATTERN,
    WORKFLOW_KINDS,
    Definition,
)
from workflows.expressions import (
    Expression,
    ExpressionError,
    compile_expression,
    has_expression,
    iter_strings,
    template,
)
from workflows.graph import Upstream, find_cycles, format_cycle, upstream_sets

ROOT = "definition"
"""The path of problems that concern the document as a whole."""

BASE_NAMES = frozenset({"input", "steps", "run"})
TEMPLATE_NAMES = BASE_NAMES | {"params"}
"""Names in scope in a template (a definition that declares ``params``)."""
"""Top-level names every expression may use."""
ITEM_NAMES = frozenset({"item", "index"})
"""Names bound only in the ``with`` of a step with ``for_each``: the interpreter decides ``if``
once for the whole step and evaluates ``for_each`` before there is an item."""
STEP_FIELDS = ("output", "status")
"""What an expression may read of a step: ``steps.<id>.output`` and ``steps.<id>.status``."""

_STEP_ID = re.compile(STEP_ID_PATTERN)
_STEP_FIELD = re.compile(r"\bsteps\s*\.\s*([A-Za-z_]\w*)\s*\.\s*([A-Za-z_]\w*)")
_EXPR = "${{ }} expression"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a definition: where (a dotted path) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of validation: the definition when valid, else every problem found."""

    definition: Definition | None
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        """Whether the definition is valid."""
        return self.definition is not None and not self.problems


def validate_definition(data: Any, known_kinds: Collection[str] | None = None) -> ValidationResult:
    """Validate loaded definition data, collecting every problem rather than the first.

    Args:
        data: The definition as loaded from YAML or JSON.
        known_kinds: Step kinds that exist (the plugin registry's); None accepts any kind.
            The built-in kinds are always known.

    Returns:
        The definition and no problems, or no definition and every problem found, in
        document order.
    """
    if not isinstance(data, dict):
        return ValidationResult(None, [Problem(ROOT, f"must be a mapping, got {_show(data)}")])
    definition, problems = _model_problems(data)
    steps = _steps_of(data)
    graph, need_problems = _needs_graph(steps)
    upstream = upstream_sets(graph)
    problems += [
        *_kind_problems(steps, known_kinds),
        *need_problems,
        *_cycle_problems(steps, find_cycles(graph)),
        *_fallback_problems(steps, data.get("defaults"), upstream),
        *_modifier_problems(steps),
        *_execution_problems(steps, data.get("defaults")),
        *_schema_problems(data, steps),
        *_expression_problems(data, steps, upstream),
    ]
    if problems:
        return ValidationResult(None, _in_document_order(_unique(problems), data))
    return ValidationResult(definition, [])


# --- shared helpers -----------------------------------------------------------------------------


def join_path(prefix: str, segments: Iterable[str | int]) -> str:
    """Append segments to a problem path: keys as ``.key``, list indices as ``[i]``.

    Args:
        prefix: The path so far; empty for the top of the document.
        segments: Mapping keys and list indices, outermost first.

    Returns:
        The path, e.g. ``steps.charge.needs[0]``; :data:`ROOT` when it is empty.
    """
    path = prefix
    for segment in segments:
        if isinstance(segment, int):
            path += f"[{segment}]"
        else:
            path = f"{path}.{segment}" if path else str(segment)
    return path or ROOT


def _show(value: Any) -> str:
    """A value as a message quotes it: strings as Python literals, the rest as JSON."""
    if value is None:
        return "nothing"
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _suggest(word: Any, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a choice is close to ``word``, else an empty string."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _either(nouns: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``; ``..., or c`` when a noun has an ``or`` of its own."""
    if len(nouns) == 1:
        return nouns[0]
    last = ", or " if any(" or " in noun for noun in nouns) else " or "
    return f"{', '.join(nouns[:-1])}{last}{nouns[-1]}"


def _steps_of(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The steps that are mappings under string ids (the models report the rest)."""
    steps = data.get("steps")
    if not isinstance(steps, dict):
        return {}
    return {k: v for k, v in steps.items() if isinstance(k, str) and isinstance(v, dict)}


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _in_document_order(problems: list[Problem], data: Mapping[str, Any]) -> list[Problem]:
    """Sort by top-level field, then by step, as they appear in the document (stable)."""
    top = {str(k): i for i, k in enumerate(data)}
    raw_steps = data.get("steps")
    step_ids = {str(k): i for i, k in enumerate(raw_steps)} if isinstance(raw_steps, dict) else {}

    def key(problem: Problem) -> tuple[int, int]:
        head, _, rest = problem.path.partition(".")
        head = head.split("[")[0]
        if head != "steps":
            return top.get(head, -1), 0
        return top.get(head, -1), step_ids.get(rest.split(".")[0].split("[")[0], -1)

    return sorted(problems, key=key)


# --- pydantic errors -> problems ----------------------------------------------------------------


@dataclass(frozen=True)
class _Located:
    """A pydantic error with its loc resolved against the models."""

    error: ErrorDetails
    segments: list[str | int]
    owner: type[BaseModel] | None
    """The model whose field the last segment names, for suggestions."""
    union_depth: int = -1
    """For an error inside a union: how many segments lead to the union (else -1)."""
    member: str = ""
    """For an error inside a union: pydantic's tag of the member that failed."""


def _model_problems(data: dict[str, Any]) -> tuple[Definition | None, list[Problem]]:
    try:
        return Definition.model_validate(data), []
    except ValidationError as error:
        return None, _pydantic_problems(error, Definition, "")


def _pydantic_problems(
    error: ValidationError, model: type[BaseModel], prefix: str
) -> list[Problem]:
    """Turn pydantic's errors into problems, one per union rather than one per member."""
    groups: dict[Any, list[_Located]] = {}
    for i, details in enumerate(error.errors(include_url=False)):
        located = _locate(model, details)
        in_union = located.union_depth >= 0
        key = tuple(located.segments[: located.union_depth]) if in_union else i
        groups.setdefault(key, []).append(located)
    problems: list[Problem] = []
    for group in groups.values():
        if group[0].union_depth < 0:
            problems.append(_problem(prefix, group[0]))
        else:
            problems += _union_problems(prefix, group)
    return problems


def _locate(model: type[BaseModel], details: ErrorDetails) -> _Located:
    """Walk an error's loc through the model's types to tell field names from union tags."""
    context: Any = model
    owner: type[BaseModel] | None = None
    segments: list[str | int] = []
    depth, member = -1, ""
    for part in details["loc"]:
        context = _strip(context)
        if depth < 0 and _members(context):
            depth, member = len(segments), str(part)
            context = next((m for m in _members(context) if _model_named(m, part)), None)
        elif part == "[key]":
            continue
        elif isinstance(context, type) and issubclass(context, BaseModel):
            owner = context
            context = _field_types(context).get(str(part))
            segments.append(part)
        else:
            context = _item_type(context)
            segments.append(part)
    return _Located(details, segments, owner, depth, member)


def _strip(annotation: Any) -> Any:
    """Remove ``Annotated`` and ``| None`` wrappers."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
            continue
        members = _members(annotation, keep_none=True)
        others = [m for m in members if m is not type(None)]
        if members and len(others) == 1:
            annotation = others[0]
            continue
        return annotation


def _members(annotation: Any, *, keep_none: bool = False) -> list[Any]:
    """The members of a union (without None unless asked); empty for anything else."""
    if get_origin(annotation) not in (Union, types.UnionType):
        return []
    members = list(get_args(annotation))
    return members if keep_none else [m for m in members if m is not type(None)]


def _model_named(annotation: Any, tag: Any) -> bool:
    return isinstance(annotation, type) and annotation.__name__ == tag


@cache
def _field_types(model: type[BaseModel]) -> dict[str, Any]:
    """A model's field annotations by alias and by name."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        out[name] = field.annotation
        if field.alias:
            out[field.alias] = field.annotation
    return out


def _field_names(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _item_type(annotation: Any) -> Any:
    """The value type of a dict or the item type of a list; None for anything else."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin is list and args:
        return args[0]
    return None


def _problem(prefix: str, located: _Located) -> Problem:
    details, segments = located.error, located.segments
    if details["type"] == "extra_forbidden":
        field = str(segments[-1])
        suggestion = _suggest(field, _field_names(located.owner))
        return Problem(join_path(prefix, segments[:-1]), f"unknown field {field!r}{suggestion}")
    if details["type"] == "missing":
        return Problem(join_path(prefix, segments[:-1]), f"missing required field {segments[-1]!r}")
    return Problem(join_path(prefix, segments), _reason(details))


def _union_problems(prefix: str, group: list[_Located]) -> list[Problem]:
    """The errors of the member that the value was meant for, or one 'expected A or B'."""
    depth = group[0].union_depth
    by_member: dict[str, list[_Located]] = {}
    for located in group:
        by_member.setdefault(located.member, []).append(located)
    specific = [
        located
        for members in by_member.values()
        if not all(len(x.segments) == depth and _noun(x.error) for x in members)
        for located in members
    ]
    if specific:
        return [_problem(prefix, located) for located in specific]
    value = group[0].error["input"]
    nouns = list(dict.fromkeys(n for x in group if (n := _noun(x.error))))
    options = [o for x in group for o in _literal_options(x.error)]
    message = f"expected {_either(nouns)}, got {_show(value)}{_suggest(value, options)}"
    return [Problem(join_path(prefix, group[0].segments[:depth]), message)]


_NOUNS = {
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
}

_PATTERN_NAMES = {
    NAME_PATTERN: "name",
    STEP_ID_PATTERN: "step id",
}


def _noun(details: ErrorDetails) -> str | None:
    """What the value should have been, for type errors; None for other errors."""
    kind, context = details["type"], details.get("ctx", {})
    if kind == "literal_error":
        return f"one of {context['expected']}"
    if kind == "string_pattern_mismatch" and context.get("pattern") == EXPR_PATTERN:
        return f"a {_EXPR}"
    return _NOUNS.get(kind)


def _literal_options(details: ErrorDetails) -> list[str]:
    if details["type"] != "literal_error":
        return []
    return re.findall(r"'([^']*)'", str(details.get("ctx", {}).get("expected", "")))


def _reason(details: ErrorDetails) -> str:
    """A human reason for one pydantic error."""
    kind, context, value = details["type"], details.get("ctx", {}), details["input"]
    if kind == "string_pattern_mismatch" and context.get("pattern") in _PATTERN_NAMES:
        pattern = str(context["pattern"])
        return f"bad {_PATTERN_NAMES[pattern]} {_show(value)}: must match {pattern.strip('^$')}"
    if kind == "value_error":
        return str(context["error"])
    if kind == "greater_than":
        return f"must be greater than {context['gt']}, got {_show(value)}"
    if kind == "greater_than_equal":
        return f"must be at least {context['ge']}, got {_show(value)}"
    noun = _noun(details)
    if noun:
        return f"expected {noun}, got {_show(value)}{_suggest(value, _literal_options(details))}"
    message = details["msg"]
    return message[:1].lower() + message[1:]


# --- kinds and their inputs ---------------------------------------------------------------------


def _kind_problems(
    steps: Mapping[str, dict[str, Any]], known_kinds: Collection[str] | None
) -> list[Problem]:
    """Unknown kinds, and the ``with`` of built-in kinds checked against their models."""
    known = None if known_kinds is None else frozenset(known_kinds) | BUILTIN_KINDS
    problems: list[Problem] = []
    for sid, step in steps.items():
        uses = step.get("uses")
        if not isinstance(uses, str):
            continue
        if known is not None and uses not in known:
            listed = ", ".join(sorted(known))
            message = f"unknown kind {uses!r}{_suggest(uses, known)}; known kinds: {listed}"
            problems.append(Problem(f"steps.{sid}.uses", message))
        model = BUILTIN_WITH.get(uses)
        inputs = step.get("with", {})
        if model is not None and isinstance(inputs, dict):
            try:
                model.model_validate(inputs)
            except ValidationError as error:
                problems += _pydantic_problems(error, model, f"steps.{sid}.with")
    return problems


# --- the graph ----------------------------------------------------------------------------------


def _needs_of(step: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(index, id) of each well-formed id in a step's ``needs`` (the models report the rest)."""
    raw = step.get("needs", [])
    items = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    return [(i, n) for i, n in enumerate(items) if isinstance(n, str) and _STEP_ID.match(n)]


def _needs_graph(
    steps: Mapping[str, dict[str, Any]],
) -> tuple[dict[str, list[str]], list[Problem]]:
    """The needs graph over existing steps, and the needs that name no step or the step itself."""
    graph: dict[str, list[str]] = {}
    problems = []
    for sid, step in steps.items():
        graph[sid] = []
        for i, need in _needs_of(step):
            path = f"steps.{sid}.needs[{i}]"
            if need == sid:
                problems.append(Problem(path, "a step cannot need itself"))
            elif need in steps:
                graph[sid].append(need)
            else:
                problems.append(Problem(path, _no_step(need, steps)))
    return graph, problems


def _cycle_problems(steps: Mapping[str, dict[str, Any]], cycles: list[list[str]]) -> list[Problem]:
    """One problem per cycle, at the need that leads from its first step to the next."""
    problems = []
    for cycle in cycles:
        first, second = cycle[0], cycle[1]
        index = next(i for i, need in _needs_of(steps[first]) if need == second)
        problems.append(Problem(f"steps.{first}.needs[{index}]", f"cycle: {format_cycle(cycle)}"))
    return problems


def _fallback_of(container: Any) -> str | None:
    """The fallback step named by a mapping's ``on_error``, if it names a well-formed one."""
    on_error = container.get("on_error") if isinstance(container, dict) else None
    target = on_error.get("fallback") if isinstance(on_error, dict) else None
    return target if isinstance(target, str) and _STEP_ID.match(target) else None


def _fallback_problems(
    steps: Mapping[str, dict[str, Any]], defaults: Any, upstream: Upstream
) -> list[Problem]:
    """Fallbacks that cannot stand in for their step, and fallback chains that loop."""
    default_path = "defaults.on_error.fallback"
    default = _fallback_of(defaults)
    problems = []
    if default is not None and default not in steps:
        problems.append(Problem(default_path, _no_step(default, steps)))
    targets: dict[str, list[str]] = {}
    paths: dict[str, str] = {}
    for sid, step in steps.items():
        own = step.get("on_error") is not None
        target = _fallback_of(step) if own else default
        if target is None or (not own and target not in steps):
            continue
        path = f"steps.{sid}.on_error.fallback" if own else default_path
        message = _fallback_message(sid, target, steps, upstream)
        if message is None:
            targets[sid], paths[sid] = [target], path
        elif own or target != sid:
            problems.append(Problem(path, message))
        else:
            message = f"step {sid!r} would fall back to itself (give it its own on_error)"
            problems.append(Problem(path, message))
    for cycle in find_cycles(targets):
        problems.append(Problem(paths[cycle[0]], f"fallback loop: {format_cycle(cycle)}"))
    return problems


def _fallback_message(
    sid: str, target: str, steps: Mapping[str, Any], upstream: Upstream
) -> str | None:
    """Why step ``sid`` cannot fall back to ``target``, or None when it can."""
    if target not in steps:
        return _no_step(target, steps)
    if target == sid:
        return "a step cannot fall back to itself"
    if upstream.includes(target, sid):
        return f"fallback {target!r} needs {sid!r}, so it can never run in its place"
    return None


def _no_step(name: str, steps: Mapping[str, Any]) -> str:
    return f"no step named {name!r}{_suggest(name, steps)}"


# --- modifiers and schemas ----------------------------------------------------------------------


def _modifier_problems(steps: Mapping[str, dict[str, Any]]) -> list[Problem]:
    """``concurrency`` without ``for_each``, and ``for_each``/``if`` values of the wrong shape."""
    problems = []
    for sid, step in steps.items():
        for_each, condition = step.get("for_each"), step.get("if")
        if step.get("concurrency") is not None and for_each is None:
            problems.append(Problem(f"steps.{sid}.concurrency", "applies only with for_each"))
        if isinstance(for_each, str):
            problems += _shape_problems(f"steps.{sid}.for_each", for_each, list, "a list")
        if isinstance(condition, str):
            problems += _shape_problems(f"steps.{sid}.if", condition, bool, "a bool")
    return problems


def _execution_problems(steps: Mapping[str, dict[str, Any]], defaults: Any) -> list[Problem]:
    """``execution`` on a kind that runs no activity, and ``local`` with what a local activity
    cannot do: go to another task queue, or heartbeat."""
    inherited = defaults if isinstance(defaults, dict) else {}
    problems = []
    for sid, step in steps.items():
        own, kind = step.get("execution"), step.get("uses")
        if kind in WORKFLOW_KINDS:
            if own is not None:
                runs = "a child run" if kind == "workflow" else "in the workflow"
                problems.append(
                    Problem(
                        f"steps.{sid}.execution",
                        f"applies only to steps that run an activity (http, webhook, plugins); "
                        f"a {kind} step runs {runs}",
                    )
                )
            continue
        if (own or inherited.get("execution")) != "local":
            continue
        path = f"steps.{sid}.execution" if own else "defaults.execution"
        fix = "use activity or auto" if own else f"give step {sid!r} execution: activity or auto"
        for field, why in (
            ("task_queue", "a local activity runs in the run's own worker"),
            ("heartbeat_timeout", "a local activity cannot heartbeat"),
        ):
            value = step.get(field, inherited.get(field))
            if value is not None:
                whose = field if own else f"step {sid!r} with {field}"
                message = f"local cannot be combined with {whose} {_show(value)} ({why}); {fix}"
                problems.append(Problem(path, message))
    return problems


def _shape_problems(path: str, text: str, want: type, noun: str) -> list[Problem]:
    """Check that a string is one expression and, when it is a constant, yields ``want``.

    An ``if`` may be bare CEL (as in GitHub Actions); a ``for_each`` string must be a
    ``${{ }}`` expression. Compile errors are left to the expression checks.
    """
    if "${{" not in text and want is list:
        return [Problem(path, f"must be a list or a {_EXPR}, got {_show(text)}")]
    try:
        expression = template(text).single if "${{" in text else compile_expression(text)
    except ExpressionError:
        return []
    if expression is None:
        message = f"must be one {_EXPR} that yields {noun} (text around it makes a string)"
        return [Problem(path, message)]
    if expression.names:
        return []
    try:
        value = expression.evaluate({})
    except ExpressionError as error:
        return [Problem(path, error.reason)]
    if not isinstance(value, want):
        return [Problem(path, f"must yield {noun}, but yields {_show(value)}")]
    return []


def _schema_problems(data: Mapping[str, Any], steps: Mapping[str, dict[str, Any]]) -> list[Problem]:
    """The definition's ``input`` and every validate step's ``schema`` must be JSON Schemas."""
    sites: list[tuple[str, Any]] = [("input", data.get("input"))]
    for sid, step in steps.items():
        inputs = step.get("with")
        if step.get("uses") == "validate" and isinstance(inputs, dict):
            sites.append((f"steps.{sid}.with.schema", inputs.get("schema")))
    problems = []
    for path, schema in sites:
        if isinstance(schema, dict) and not has_expression(schema):
            text = json.dumps(schema, default=str)
            problems += [Problem(join_path(path, at), why) for at, why in _json_schema_errors(text)]
    return problems


@lru_cache(maxsize=256)
def _json_schema_errors(text: str) -> tuple[tuple[tuple[str | int, ...], str], ...]:
    """Every way a JSON Schema (given as JSON text, the cache key) breaks its meta-schema."""
    schema = json.loads(text)
    dialect = schema.get("$schema")
    if dialect is not None and not isinstance(dialect, str):
        return ((("$schema",), f"must be a URI string, got {_show(dialect)}"),)
    cls = validator_for(schema, default=Draft202012Validator)
    latest = str(Draft202012Validator.META_SCHEMA["$id"]).rstrip("#")
    if dialect is not None and cls is Draft202012Validator and dialect.rstrip("#") != latest:
        return ((("$schema",), f"unknown JSON Schema dialect {_show(dialect)}"),)
    checker = cls(cls.META_SCHEMA, format_checker=cls.FORMAT_CHECKER)
    errors = sorted(checker.iter_errors(schema), key=lambda e: [str(p) for p in e.absolute_path])
    return tuple((tuple(e.absolute_path), e.message) for e in errors)


# --- expressions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Site:
    """A string that holds expressions, and what those expressions may use."""

    path: str
    text: str
    step: str | None
    """The step whose field it is (its references must be upstream), None for ``output``."""
    names: frozenset[str]
    no_item: str = "is defined only in the with of a for_each step"
    """Why ``item`` and ``index`` are not in scope here (when they are not)."""
    bare: bool = False
    """Bare CEL without ``${{ }}`` (an ``if`` may be written so)."""


def _sites(data: Mapping[str, Any], steps: Mapping[str, dict[str, Any]]) -> Iterator[_Site]:
    """Every string that holds expressions, in document order."""
    base = TEMPLATE_NAMES if data.get("params") else BASE_NAMES
    for sid, step in steps.items():
        prefix = f"steps.{sid}"
        for_each = step.get("for_each")
        for path, text in iter_strings(for_each, f"{prefix}.for_each"):
            yield _Site(path, text, sid, base, "is not defined in for_each itself")
        condition = step.get("if")
        if isinstance(condition, str):
            no_item = "is not defined in if (it is decided once, for the whole step)"
            bare = "${{" not in condition
            yield _Site(f"{prefix}.if", condition, sid, base, no_item, bare=bare)
        inputs = step.get("with")
        names = base | ITEM_NAMES if for_each is not None else base
        if isinstance(inputs, dict):
            for path, text in iter_strings(inputs, f"{prefix}.with"):
                yield _Site(path, text, sid, names)
    for path, text in iter_strings(data.get("output"), "output"):
        yield _Site(path, text, None, base)


def _expression_problems(
    data: Mapping[str, Any], steps: Mapping[str, dict[str, Any]], upstream: Upstream
) -> list[Problem]:
    """Expressions that do not compile, use unknown names, or read steps they do not need."""
    problems = []
    for site in _sites(data, steps):
        try:
            expressions = (
                [compile_expression(site.text)] if site.bare else template(site.text).expressions
            )
        except ExpressionError as error:
            problems.append(Problem(site.path, str(error).replace("ERROR: <input>:", "at ")))
            continue
        for expression in expressions:
            problems += [Problem(site.path, m) for m in _name_messages(expression, site)]
            if "steps" in expression.names:
                messages = _reference_messages(expression, site.step, steps, upstream)
                problems += [Problem(site.path, m) for m in messages]
    return problems


def _name_messages(expression: Expression, site: _Site) -> list[str]:
    messages = []
    for name in sorted(expression.names - site.names):
        if name in ITEM_NAMES:
            messages.append(f"{name!r} {site.no_item}")
        else:
            in_scope = ", ".join(sorted(site.names))
            suggestion = _suggest(name, site.names)
            messages.append(f"unknown name {name!r}{suggestion}; names in scope: {in_scope}")
    return messages


def _reference_messages(
    expression: Expression,
    owner: str | None,
    steps: Mapping[str, Any],
    upstream: Upstream,
) -> list[str]:
    """Steps an expression reads that do not exist, are not upstream, or fields they lack."""
    messages = []
    for ref in sorted(expression.step_refs or ()):
        if ref not in steps:
            messages.append(f"refers to step {ref!r}, which does not exist{_suggest(ref, steps)}")
        elif owner is None:
            continue
        elif ref == owner:
            messages.append(f"refers to its own step {ref!r}; a step reads only steps it needs")
        elif not upstream.includes(owner, ref):
            messages.append(
                f"refers to step {ref!r}, which {owner!r} does not need (add it to needs)"
            )
    for sid, field in _STEP_FIELD.findall(expression.source):
        if field not in STEP_FIELDS:
            suggestion = _suggest(field, STEP_FIELDS)
            messages.append(
                f"reads steps.{sid}.{field}{suggestion}; a step has only output, status"
            )
    return messages
