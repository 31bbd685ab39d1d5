"""Definitions read from files, for ``dagflow run`` and ``dagflow validate``."""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.definition import BUILTIN_KINDS, Definition
from workflows.loading import DefinitionSyntaxError, load_definition, validate_text
from workflows.validation import Problem

SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"


class DefinitionFileError(Exception):
    """A definition file is missing, unreadable or invalid; ``problems`` says every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def read_definition(path: Path, known_kinds: Collection[str] | None = None) -> Definition:
    """Read and validate one definition file.

    Raises:
        DefinitionFileError: With one ``FILE: path: message`` line per problem.
    """
    report = validate_file(str(path), known_kinds)
    if report.definition is None or not report.ok:
        raise DefinitionFileError(report.lines())
    return report.definition


@dataclass(frozen=True)
class FileReport:
    """The outcome of validating one file."""

    file: str
    problems: list[Problem]
    error: str | None = None
    """Why the file could not be read, if it could not."""
    definition: Definition | None = None

    @property
    def steps(self) -> int:
        """How many steps the definition has (0 when invalid)."""
        return len(self.definition.steps) if self.definition is not None else 0

    @property
    def ok(self) -> bool:
        """Whether the file was read and is a valid definition."""
        return self.error is None and not self.problems

    def lines(self) -> list[str]:
        """The report as ``FILE: ...`` lines."""
        if self.error is not None:
            return [f"{self.file}: {self.error}"]
        if self.ok:
            return [f"{self.file}: ok ({self.steps} steps)"]
        return [f"{self.file}: {problem}" for problem in self.problems]

    def as_json(self) -> dict[str, Any]:
        """The report as JSON data."""
        out: dict[str, Any] = {"file": self.file, "ok": self.ok}
        if self.error is not None:
            out["error"] = self.error
        if self.ok:
            out["steps"] = self.steps
        out["problems"] = [{"path": p.path, "message": p.message} for p in self.problems]
        return out


def validate_file(name: str, known_kinds: Collection[str] | None) -> FileReport:
    """Read one definition file (``-`` for standard input) and validate it.

    Args:
        name: The file's path, or ``-``.
        known_kinds: Step kinds that exist; None accepts any kind.

    Returns:
        Its report; a file that cannot be read has ``error`` set.
    """
    try:
        text = sys.stdin.read() if name == STDIN else Path(name).read_text(encoding="utf-8")
    except OSError as error:
        return FileReport(name, [], error=f"cannot read: {error.strerror or error}")
    except UnicodeDecodeError:
        return FileReport(name, [], error="cannot read: not UTF-8 text")
    filename = None if name == STDIN else Path(name).name
    result = validate_text(text, filename=filename, known_kinds=known_kinds)
    return FileReport(name, result.problems, definition=result.definition)


def known_kinds() -> Collection[str]:
    """The step kinds that exist here: the plugin registry's, or the built-in ones without it."""
    try:
        from activities.registry import known_kinds as registry_kinds
    except ImportError:
        return BUILTIN_KINDS
    return registry_kinds()


def child_refs(definition: Definition) -> list[tuple[str, str]]:
    """``(step id, definition ref)`` of every ``workflow`` step."""
    return [
        (sid, str(step.with_.get("definition")))
        for sid, step in definition.steps.items()
        if step.uses == "workflow"
    ]


def resolve_library(
    definition: Definition,
    search: Iterable[Path],
    known_kinds: Collection[str] | None = None,
) -> dict[str, Definition]:
    """Find the definitions that ``workflow`` steps run (transitively) among files.

    A reference ``name`` or ``name@version`` is matched by the ``name`` inside the files of the
    ``search`` folders; files carry no versions, so the version part is not checked.

    Raises:
        DefinitionFileError: If a referenced definition is missing or invalid.
    """
    index = _index(search)
    library: dict[str, Definition] = {}
    todo = [(definition, sid, ref) for sid, ref in child_refs(definition)]
    problems: list[str] = []
    while todo:
        parent, sid, ref = todo.pop()
        if ref in library:
            continue
        name = ref.split("@", 1)[0]
        path = index.get(name)
        if path is None:
            where = ", ".join(str(p) for p in search) or "no folders"
            problems.append(
                f"{parent.name}: steps.{sid}.with.definition: no definition named '{name}' "
                f"in {where} (add --definitions DIR)"
            )
            continue
        child = read_definition(path, known_kinds)
        library[ref] = child
        todo.extend((child, csid, cref) for csid, cref in child_refs(child))
    if problems:
        raise DefinitionFileError(problems)
    return library


def _index(folders: Iterable[Path]) -> dict[str, Path]:
    """Definition name -> file, over every definition file in ``folders``."""
    found: dict[str, Path] = {}
    for folder in folders:
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.suffix not in SUFFIXES:
                continue
            try:
                data = load_definition(path.read_text(encoding="utf-8"), filename=path.name).data
            except (OSError, UnicodeDecodeError, DefinitionSyntaxError):
                continue
            if isinstance(data, dict) and isinstance(data.get("name"), str):
                found.setdefault(data["name"], path)
    return found
