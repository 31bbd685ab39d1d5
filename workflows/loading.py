"""Definition text (YAML or JSON) into plain data, with duplicate keys and syntax errors reported.

Nothing here reads files: callers pass the text (and, if they have one, the file name, whose
extension chooses the syntax). YAML is read with the YAML 1.2 core schema's scalars, so the
same definition loads to the same data from YAML and from JSON: only ``true``/``false`` are
booleans (``on``, ``yes`` stay strings), ``1e3`` is a number, dates stay strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from workflows.validation import ROOT, Problem, ValidationResult, join_path, validate_definition

Syntax = Literal["yaml", "json"]

MAX_YAML_VALUES = 1_000_000
"""Most values a YAML document may hold once its aliases are expanded (guards alias bombs)."""

_EXTENSIONS: dict[str, Syntax] = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}


class DefinitionSyntaxError(ValueError):
    """The text is not well-formed YAML or JSON; ``problem`` says where and why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


@dataclass(frozen=True)
class Loaded:
    """Parsed definition data, and the duplicate keys found while parsing it."""

    data: Any
    problems: list[Problem]


def detect_syntax(text: str, filename: str | None = None) -> Syntax:
    """Choose YAML or JSON by the file extension, else by the first character of the text.

    Args:
        text: The definition text.
        filename: The file it came from, if any.

    Returns:
        ``"json"`` for ``.json`` files and extensionless text starting with ``{``, else
        ``"yaml"``.
    """
    named = _syntax_of_name(filename)
    if named is not None:
        return named
    return "json" if text.lstrip("\ufeff \t\r\n").startswith("{") else "yaml"


def load_definition(
    text: str, *, filename: str | None = None, syntax: Syntax | None = None
) -> Loaded:
    """Parse definition text, reporting every duplicate key with its path.

    Args:
        text: The definition as YAML or JSON.
        filename: The file it came from, used to choose the syntax and nothing else.
        syntax: Force YAML or JSON; by default :func:`detect_syntax` chooses. When the
            choice was a guess from the text and JSON fails, YAML (a superset) is tried.

    Returns:
        The data and the duplicate-key problems (a duplicate key's last value wins).

    Raises:
        DefinitionSyntaxError: If the text is not well-formed.
    """
    text = text.removeprefix("\ufeff")
    chosen = syntax or detect_syntax(text, filename)
    if chosen == "yaml":
        return _load_yaml(text)
    try:
        return _load_json(text)
    except DefinitionSyntaxError as json_error:
        if syntax is not None or _syntax_of_name(filename) is not None:
            raise
        try:
            return _load_yaml(text)
        except DefinitionSyntaxError:
            raise json_error from None


def validate_text(
    text: str,
    *,
    filename: str | None = None,
    syntax: Syntax | None = None,
    known_kinds: Collection[str] | None = None,
) -> ValidationResult:
    """Load and validate definition text, with every problem of both steps.

    Args:
        text: The definition as YAML or JSON.
        filename: The file it came from (chooses the syntax).
        syntax: Force YAML or JSON.
        known_kinds: Step kinds that exist; None accepts any kind.

    Returns:
        The validation result; duplicate keys and syntax errors count as problems.
    """
    try:
        loaded = load_definition(text, filename=filename, syntax=syntax)
    except DefinitionSyntaxError as error:
        return ValidationResult(None, [error.problem])
    result = validate_definition(loaded.data, known_kinds)
    if not loaded.problems:
        return result
    return ValidationResult(None, loaded.problems + result.problems)


def _syntax_of_name(filename: str | None) -> Syntax | None:
    """The syntax a file name's extension chooses, if it chooses one."""
    lowered = (filename or "").lower()
    return next((syntax for ext, syntax in _EXTENSIONS.items() if lowered.endswith(ext)), None)


# --- JSON ---------------------------------------------------------------------------------------


def _load_json(text: str) -> Loaded:
    duplicates: list[tuple[dict[str, Any], str]] = []

    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) < len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    duplicates.append((obj, key))
                seen.add(key)
        return obj

    try:
        data = json.loads(text, object_pairs_hook=build)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        raise DefinitionSyntaxError(Problem(ROOT, f"invalid JSON: {error.msg} ({where})")) from None
    except RecursionError:
        raise DefinitionSyntaxError(Problem(ROOT, "invalid JSON: nested too deeply")) from None
    paths = _paths_to(data, {id(obj) for obj, _ in duplicates}, _data_children)
    return Loaded(
        data, [Problem(paths[id(obj)], f"duplicate key {key!r}") for obj, key in duplicates]
    )


def _data_children(value: Any) -> Iterable[tuple[str | int, Any]]:
    if isinstance(value, dict):
        return ((str(k), v) for k, v in value.items())
    if isinstance(value, list):
        return enumerate(value)
    return ()


# --- YAML ---------------------------------------------------------------------------------------

_MERGE_TAG = "tag:yaml.org,2002:merge"
_YAML_1_1_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "timestamp")}
_CORE_SCALARS = (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$",
        "-+.0123456789",
    ),
)


class _Loader(yaml.SafeLoader):
    """A SafeLoader with YAML 1.2 core scalars that records duplicate mapping keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[yaml.MappingNode, str, int]] = []
        self.has_aliases = False

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """Compose as SafeLoader does, noting whether the document uses aliases."""
        if self.check_event(yaml.AliasEvent):
            self.has_aliases = True
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        """Build a mapping as SafeLoader does, first noting keys that appear twice."""
        if isinstance(node, yaml.MappingNode):
            seen: set[tuple[str, str]] = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                    continue
                key = (key_node.tag, key_node.value)
                if key in seen:
                    self.duplicates.append((node, key_node.value, key_node.start_mark.line + 1))
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    base = {"0o": 8, "0x": 16}.get(text[:2], 10)
    return int(text[2:] if base != 10 else text, base)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML_1_1_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _pattern, _first in _CORE_SCALARS:
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _load_yaml(text: str) -> Loaded:
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is not None and loader.has_aliases:
            _check_size(root)
        data = None if root is None else loader.construct_document(root)
    except yaml.MarkedYAMLError as error:
        raise DefinitionSyntaxError(Problem(ROOT, _yaml_message(error))) from None
    except yaml.YAMLError as error:
        raise DefinitionSyntaxError(Problem(ROOT, f"invalid YAML: {error}")) from None
    except RecursionError:
        raise DefinitionSyntaxError(Problem(ROOT, "invalid YAML: nested too deeply")) from None
    finally:
        loader.dispose()
    duplicates = sorted(loader.duplicates, key=lambda duplicate: duplicate[2])
    paths = _paths_to(root, {id(node) for node, _, _ in duplicates}, _node_children)
    problems = [
        Problem(paths[id(node)], f"duplicate key {key!r} (line {line})")
        for node, key, line in duplicates
    ]
    return Loaded(data, problems)


def _yaml_message(error: yaml.MarkedYAMLError) -> str:
    """PyYAML's context and problem, each with where it is (lines and columns from 1)."""
    parts = []
    if error.context:
        mark = error.context_mark
        parts.append(error.context + (f" (line {mark.line + 1})" if mark is not None else ""))
    if error.problem:
        mark = error.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        parts.append(error.problem + where)
    return f"invalid YAML: {', '.join(parts) or 'syntax error'}"


def _node_children(node: Any) -> Iterable[tuple[str | int, Any]]:
    if isinstance(node, yaml.MappingNode):
        return ((str(k.value), v) for k, v in node.value if isinstance(k, yaml.ScalarNode))
    if isinstance(node, yaml.SequenceNode):
        return enumerate(node.value)
    return ()


def _check_size(root: yaml.Node) -> None:
    """Refuse documents whose aliases recurse or expand to more than MAX_YAML_VALUES values."""
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        kids = [child for _, child in _node_children(node)]
        if isinstance(node, yaml.MappingNode):
            kids += [k for k, _ in node.value if not isinstance(k, yaml.ScalarNode)]
        if children_done:
            open_nodes.discard(key)
            size[key] = 1 + sum(size[id(kid)] for kid in kids)
            if size[key] > MAX_YAML_VALUES:
                limit = f"{MAX_YAML_VALUES:,}"
                raise yaml.YAMLError(f"aliases expand to more than {limit} values")
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise yaml.YAMLError("an alias refers to a node that contains it")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in kids if id(kid) not in size)


# --- paths of containers ------------------------------------------------------------------------


def _paths_to(
    root: Any,
    wanted: set[int],
    children: Callable[[Any], Iterable[tuple[str | int, Any]]],
) -> dict[int, str]:
    """The path of each wanted container (by id), found by walking from the root."""
    found: dict[int, str] = {}
    stack: list[tuple[Any, list[str | int]]] = [(root, [])] if wanted else []
    seen: set[int] = set()
    while stack and len(found) < len(wanted):
        value, segments = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if id(value) in wanted:
            found[id(value)] = join_path("", segments)
        stack.extend((child, [*segments, key]) for key, child in children(value))
    return found
