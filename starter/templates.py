"""Templates: definitions with ``params``, rendered into new definitions.

Only expressions that read ``params`` and nothing else are rendered; every other ``${{ }}``
stays for the run to evaluate. An expression that mixes ``params`` with run-time names could be
rendered neither at instantiation nor at run time, so templates may not have one.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from workflows.definition import Param, param_type_matches
from workflows.expressions import Expression, ExpressionError, iter_strings, template, to_text
from workflows.validation import Problem, join_path

PARAMS = "params"
_PARAM_REF = re.compile(r"\bparams\s*\.\s*([A-Za-z_]\w*)")


def template_problems(data: Any) -> list[Problem]:
    """What is wrong with the ``params`` expressions of definition data.

    In a template, expressions that read ``params`` must read nothing else and only declared
    params; in a plain definition, no expression may read ``params`` at all.
    """
    if not isinstance(data, dict):
        return []
    declared = data.get(PARAMS)
    names = set(declared) if isinstance(declared, dict) else None
    problems = []
    for path, expression in _expressions(data):
        if PARAMS not in expression.names:
            continue
        if names is None:
            problems.append(Problem(path, "params are defined only in templates (add params:)"))
            continue
        if expression.names != {PARAMS}:
            others = ", ".join(sorted(expression.names - {PARAMS}))
            message = (
                f"an expression that reads params may read nothing else (it also reads "
                f"{others}): params are rendered when the template is instantiated"
            )
            problems.append(Problem(path, message))
        for ref in _PARAM_REF.findall(expression.source):
            if ref not in names:
                problems.append(Problem(path, f"no param named {ref!r}{_suggest(ref, names)}"))
    return problems


class TemplateError(Exception):
    """Instantiation failed; ``problems`` says every reason, each with its path."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems


def param_values(params: Mapping[str, Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """The value of every param: the given one, else its default.

    Raises:
        TemplateError: For params that are unknown, missing or of the wrong type, each at
            ``params.<name>``.
    """
    problems = [
        Problem(f"params.{name}", f"unknown param{_suggest(name, params)}")
        for name in given
        if name not in params
    ]
    values = {}
    for name, param in params.items():
        path = f"params.{name}"
        if name in given:
            value = given[name]
            if value is not None and not param_type_matches(param.type, value):
                problems.append(Problem(path, f"expected {param.type}, got {_show(value)}"))
            values[name] = value
        elif param.required:
            problems.append(Problem(path, f"missing required param of type {param.type}"))
        else:
            values[name] = param.default
    if problems:
        raise TemplateError(problems)
    return values


def render_template(data: Mapping[str, Any], name: str, values: Mapping[str, Any]) -> Any:
    """The template's data with its params expressions rendered, named ``name``, without
    ``params``.

    Raises:
        TemplateError: For expressions that failed, each at its path.
    """
    problems: list[Problem] = []
    scope = {PARAMS: dict(values)}
    rendered = {
        key: _render(value, key, scope, problems) for key, value in data.items() if key != PARAMS
    }
    if problems:
        raise TemplateError(problems)
    return {**rendered, "name": name}


def _render(value: Any, path: str, scope: dict[str, Any], problems: list[Problem]) -> Any:
    if isinstance(value, dict):
        return {k: _render(v, join_path(path, [str(k)]), scope, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, join_path(path, [i]), scope, problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${{" not in value:
        return value
    try:
        compiled = template(value)
        single = compiled.single
        if single is not None and _renderable(single):
            return single.evaluate(scope)
        return "".join(
            part
            if isinstance(part, str)
            else to_text(part.evaluate(scope))
            if _renderable(part)
            else f"${{{{ {part.source} }}}}"
            for part in compiled.parts
        )
    except ExpressionError as error:
        problems.append(Problem(path, error.reason))
        return value


def _renderable(expression: Expression) -> bool:
    return expression.names == {PARAMS}


def _expressions(data: Mapping[str, Any]) -> Iterator[tuple[str, Expression]]:
    """Every compiled expression outside ``params``, with its path, in document order
    (compile errors are the validation's to report)."""
    for key, value in data.items():
        if key == PARAMS:
            continue
        for path, text in iter_strings(value, str(key)):
            try:
                expressions = template(text).expressions
            except ExpressionError:
                continue
            yield from ((path, expression) for expression in expressions)


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else f"{text[:57]}..."
