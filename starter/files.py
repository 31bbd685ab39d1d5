"""Definitions read from files, for ``dagflow run`` and ``dagflow validate``."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path

from workflows.definition import Definition
from workflows.loading import DefinitionSyntaxError, load_definition, validate_text

SUFFIXES = (".yaml", ".yml", ".json")


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
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DefinitionFileError([f"{path}: cannot read: {e.strerror or e}"]) from None
    except UnicodeDecodeError:
        raise DefinitionFileError([f"{path}: not UTF-8 text"]) from None
    result = validate_text(text, filename=path.name, known_kinds=known_kinds)
    if result.definition is None or result.problems:
        raise DefinitionFileError([f"{path}: {p}" for p in result.problems])
    return result.definition


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
