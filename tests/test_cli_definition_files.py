"""``dagflow schema`` and ``dagflow validate``, run as the installed console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

DATA = Path(__file__).parent / "data" / "definitions"
EXAMPLE = DATA / "order-fulfilment.yaml"
BROKEN = DATA / "broken.yaml"


def dagflow(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``dagflow`` console script of this environment."""
    script = Path(sys.executable).with_name("dagflow")
    executable = str(script) if script.exists() else shutil.which("dagflow")
    assert executable, "dagflow is not installed: run pip install -e '.[test]'"
    return subprocess.run(
        [executable, *map(str, args)], capture_output=True, text=True, input=stdin, timeout=60
    )


def test_validate_valid_files_exits_0() -> None:
    done = dagflow("validate", EXAMPLE, DATA / "order-fulfilment.json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{EXAMPLE}: ok (5 steps)",
        f"{DATA / 'order-fulfilment.json'}: ok (5 steps)",
    ]
    assert done.stderr == ""


def test_validate_prints_every_problem_and_exits_2() -> None:
    done = dagflow("validate", EXAMPLE, BROKEN)
    assert done.returncode == 2
    assert done.stdout.splitlines() == [f"{EXAMPLE}: ok (5 steps)"]
    assert done.stderr.splitlines() == [
        f"{BROKEN}: steps: duplicate key 'charge' (line 17)",
        f"{BROKEN}: name: bad name 'Order Fulfilment': must match [a-z0-9][a-z0-9._-]{{0,63}}",
        f"{BROKEN}: steps.fetch: unknown field 'retires' (did you mean 'retry'?)",
        f"{BROKEN}: steps.fetch.with: unknown field 'metod' (did you mean 'method'?)",
        f"{BROKEN}: steps.charge.needs[0]: no step named 'fech' (did you mean 'fetch'?)",
        f"{BROKEN}: steps.charge.needs[1]: cycle: charge -> reserve -> charge",
        f"{BROKEN}: steps.charge.with.json.amount: refers to step 'fetch', which 'charge' does "
        "not need (add it to needs)",
        f"{BROKEN}: steps.reserve.with.url: 'item' is defined only in the with of a for_each step",
    ]


def test_validate_json_report() -> None:
    done = dagflow("validate", "--json", EXAMPLE, BROKEN)
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["ok"] is False
    good, bad = report["files"]
    assert good == {"file": str(EXAMPLE), "ok": True, "steps": 5, "problems": []}
    assert bad["ok"] is False
    assert bad["problems"][0] == {"path": "steps", "message": "duplicate key 'charge' (line 17)"}
    assert len(bad["problems"]) == 8
    assert all(set(problem) == {"path", "message"} for problem in bad["problems"])


def test_validate_missing_file_exits_2_without_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    done = dagflow("validate", missing, EXAMPLE)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"{missing}: cannot read: No such file or directory"]
    assert done.stdout.splitlines() == [f"{EXAMPLE}: ok (5 steps)"]


def test_validate_syntax_error_and_stdin() -> None:
    done = dagflow("validate", "-", stdin="name: x\nsteps: [\n")
    assert done.returncode == 2
    assert done.stderr.startswith("-: definition: invalid YAML: ")
    assert "(line 3, column 1)" in done.stderr
    assert "Traceback" not in done.stderr


def test_schema_is_a_json_schema_that_accepts_the_example() -> None:
    done = dagflow("schema")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    example = yaml.safe_load(EXAMPLE.read_text())
    assert list(validator.iter_errors(example)) == []
    example["steps"]["fetch"]["with"]["jsn"] = {}
    assert [e.json_path for e in validator.iter_errors(example)] == ["$.steps.fetch.with"]


@pytest.mark.parametrize("command", ["schema", "validate"])
def test_help_has_an_example(command: str) -> None:
    done = dagflow(command, "--help")
    assert done.returncode == 0
    assert "Example" in done.stdout
    assert f"dagflow {command}" in done.stdout
