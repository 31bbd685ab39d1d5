"""The README's first lines: the two commands, and CI runs the test one."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from workflows.loading import validate_text

REPO = Path(__file__).resolve().parents[1]


def first_commands() -> list[str]:
    """The commands of the README's first code block, comments cut."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block is not None, "the README starts with a sh block"
    assert text.index(block.group(0)) < text.index("\n## "), "before the first section"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]


def test_the_first_block_is_the_run_and_the_test_command() -> None:
    run, test = first_commands()
    assert run == "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/dagflow dev"
    assert test == "scripts/test"
    assert (REPO / test).stat().st_mode & 0o111, "scripts/test is executable"


def test_ci_runs_the_readme_test_command() -> None:
    _, test = first_commands()
    lines = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    commands = [shlex.split(line) for line in lines]
    assert any(test in words for words in commands), f".ci/run calls {test}: {lines}"


def test_the_tour_definition_is_valid() -> None:
    text = (REPO / "README.md").read_text()
    [tour] = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert yaml.safe_load(tour)["name"] == "ledger-sync"
    result = validate_text(tour, filename="tour.yaml")
    assert result.problems == [] and result.definition is not None
