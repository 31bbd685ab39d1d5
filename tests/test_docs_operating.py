"""docs/operating.md stays true: its shell commands run, its --help excerpts match the real
output, its Docker commands name the compose file and its services, its settings table is the
settings classes, and its SQL gives the starter a database it can migrate."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import click
from sqlalchemy.engine import make_url
from temporalio.client import Client

from starter.cli import cli
from starter.devserver import temporal_binary
from starter.migrations import current_revision, head_revision
from starter.routes import health
from starter.settings import ServiceSettings
from tests.test_compose import (
    COMPOSE_FILE,
    EXPECTED_ATTRIBUTES,
    compose,
    created_attributes,
    custom_attributes,
    env_names,
    expected_server_types,
    published,
    resolve,
)
from worker.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "operating.md"
DAGFLOW = str(Path(sys.executable).parent / "dagflow")
SHELL = {"sh", "shell", "bash", "console"}


@dataclass
class Block:
    lang: str
    text: str
    line: int

    @property
    def commands(self) -> list[str]:
        """Its commands: continuation lines joined, comments and blank lines left out."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        return [c.strip() for c in joined.splitlines() if c.strip() and not c.startswith("#")]

    @property
    def kind(self) -> str:
        """``help`` (a --help excerpt), ``docker`` (needs an engine) or ``run``."""
        first = self.text.splitlines()[0]
        if first.startswith("$ ") and first.endswith(" --help"):
            return "help"
        if all(c.startswith("docker ") for c in self.commands):
            return "docker"
        return "run"


def doc() -> str:
    return DOC.read_text()


def blocks(lang: set[str] | None = None) -> list[Block]:
    found = []
    for m in re.finditer(r"^```(\w*)\n(.*?)^```$", doc(), re.S | re.M):
        if lang is None or m[1] in lang:
            found.append(Block(m[1], m[2], doc()[: m.start()].count("\n") + 1))
    return found


def runner(command: str) -> str | None:
    """Which test runs a command of the page (None: none does)."""
    if command.startswith("temporal "):
        return "temporal"
    if command.split()[:3] == ["dagflow", "db", "upgrade"]:
        return "db upgrade"
    return None


def run_commands(kind: str) -> list[str]:
    return [c for b in blocks(SHELL) if b.kind == "run" for c in b.commands if runner(c) == kind]


def test_every_shell_command_is_run_an_excerpt_or_docker() -> None:
    shell = blocks(SHELL)
    assert {b.kind for b in shell} == {"help", "docker", "run"}
    for block in shell:
        if block.kind == "run":
            untested = [c for c in block.commands if runner(c) is None]
            assert not untested, f"line {block.line}: no test runs {untested}"
        if block.lang == "console":
            assert block.kind == "help", f"line {block.line}: console blocks are --help excerpts"
    assert run_commands("temporal") and run_commands("db upgrade")


async def run(argv: list[str], env: Mapping[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, env=dict(env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


def argv(command: str) -> list[str]:
    words = shlex.split(command)
    programs = {"dagflow": DAGFLOW, "temporal": temporal_binary()}
    return [programs.get(words[0], words[0]), *words[1:]]


def normalized(text: str) -> str:
    return " ".join(text.split())


async def test_help_excerpts_match_the_real_help() -> None:
    excerpts = [b for b in blocks(SHELL) if b.kind == "help"]
    assert excerpts
    for block in excerpts:
        first, *rest = block.text.splitlines()
        code, out = await run(argv(first.removeprefix("$ ")), {**os.environ, "COLUMNS": "80"})
        assert code == 0, out
        real, at = normalized(out), 0
        chunks = "\n".join(rest).split("\n...\n")
        for chunk in (normalized(c) for c in chunks if c.strip()):
            found = real.find(chunk, at)
            assert found >= 0, f"line {block.line}: not in `{first[2:]}` (in order): {chunk}"
            at = found + len(chunk)


def test_docker_commands_name_the_compose_file_and_its_services() -> None:
    services = compose()["services"]
    docker = [c for b in blocks(SHELL) if b.kind == "docker" for c in b.commands]
    assert docker
    for command in docker:
        words = shlex.split(command)
        assert words[:4] == ["docker", "compose", "-f", COMPOSE_FILE.name], command
        assert (REPO / words[3]).resolve() == COMPOSE_FILE
        subcommand, *args = words[4:]
        assert subcommand in {"up", "down", "logs", "ps", "stop", "restart", "build"}, command
        while args:
            arg = args.pop(0)
            if arg == "--scale":
                name = args.pop(0).split("=")[0]
                assert name in services, f"{command}: no service {name}"
                assert not published(services[name]), f"{name} publishes a port: cannot scale"
            elif not arg.startswith("-"):
                assert arg in services, f"{command}: no service {arg}"


def test_search_attribute_commands_are_the_codes() -> None:
    commands = "\n".join(run_commands("temporal"))
    assert created_attributes(commands) == EXPECTED_ATTRIBUTES
    namespaces = set(re.findall(r"--namespace (\S+)", commands))
    assert len(namespaces) == 1, "one namespace throughout"


async def test_temporal_commands_run(client: Client, temporal_address: str) -> None:
    """Run in order against the dev server. `search-attribute create` is run again while the
    new namespace has not reached the frontend yet, as the page tells people to do."""
    env = {**os.environ, "TEMPORAL_ADDRESS": temporal_address}
    for command in run_commands("temporal"):
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            code, out = await run(argv(command), env)
            retry = "search-attribute create" in command and "not found" in out
            if code == 0 or not retry or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(1)
        assert code == 0, f"{command}: {out}"
    (namespace,) = set(re.findall(r"--namespace (\S+)", "\n".join(run_commands("temporal"))))
    assert await custom_attributes(client, namespace) == expected_server_types()


async def test_db_upgrade_runs(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'dagflow.db'}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DAGFLOW_")}
    for command in run_commands("db upgrade"):
        code, out = await run(argv(command), {**clean, "DAGFLOW_DATABASE_URL": url})
        assert code == 0, out
        assert f"at revision {head_revision()}" in out
    assert await current_revision(url) == head_revision()


async def test_sql_gives_the_starter_a_database_it_can_migrate(postgres_uri: str) -> None:
    """The page's SQL on a real PostgreSQL, then its `dagflow db upgrade` as that user."""
    (sql,) = [b.text for b in blocks({"sql"})]
    statements = [s.strip() for s in sql.split(";") if s.strip()]
    role = re.search(r"CREATE ROLE (\w+) LOGIN PASSWORD '([^']+)'", sql)
    database = re.search(r"CREATE DATABASE (\w+) OWNER (\w+)", sql)
    assert role and database and database[2] == role[1]
    admin = await asyncpg.connect(postgres_uri)
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()
    server = make_url(postgres_uri)
    url = server.set(
        drivername="postgresql+asyncpg",
        username=role[1],
        password=role[2],
        database=database[1],
    ).render_as_string(hide_password=False)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DAGFLOW_")}
    for command in run_commands("db upgrade"):
        code, out = await run(argv(command), {**clean, "DAGFLOW_DATABASE_URL": url})
        assert code == 0, out
    assert await current_revision(url) == head_revision()


# --- the settings table -----------------------------------------------------------------------


def settings_rows() -> list[dict[str, str]]:
    """The rows of the table whose first column is a DAGFLOW_ variable."""
    rows = []
    header: list[str] = []
    for line in doc().splitlines():
        if not line.startswith("|"):
            header = []
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = cells
        elif cells[0].startswith("`DAGFLOW_"):
            rows.append({name: cell.strip("`") for name, cell in zip(header, cells, strict=True)})
    return rows


def command_options(path: list[str]) -> set[str]:
    command, _ = resolve(cli, list(path))
    return {o for p in command.params if isinstance(p, click.Option) for o in p.opts}


def same_default(cell: str, default: object) -> bool:
    if cell == "none":
        return default in (None, [])
    if isinstance(default, bool):
        return cell == str(default).lower()
    if isinstance(default, int | float) and not isinstance(default, bool):
        return float(cell) == float(default)
    return cell == default


def test_settings_table_is_the_settings_classes() -> None:
    rows = settings_rows()
    models = {"worker": [Settings], "starter": [ServiceSettings], "both": [Settings,
              ServiceSettings]}  # fmt: skip
    commands = {Settings: ["worker"], ServiceSettings: ["serve"]}
    documented = {row["environment"] for row in rows}
    assert documented == set(env_names(Settings)) | set(env_names(ServiceSettings))
    for row in rows:
        variable = row["environment"]
        for model in models[row["read by"]]:
            field = env_names(model).get(variable)
            assert field, f"{variable}: {model.__name__} does not read it"
            default = model.model_fields[field].get_default(call_default_factory=True)
            assert same_default(row["default"], default), f"{variable}: default {default!r}"
            if row["flag"]:
                assert row["flag"] in command_options(commands[model]), f"{variable}: flag"


def test_settings_table_reader_rejects_a_wrong_default() -> None:
    assert not same_default("8081", 8080)
    assert not same_default("none", "default")
    assert same_default("10", 10.0)
    assert same_default("true", True) and not same_default("True", True)


# --- everything else the page names -----------------------------------------------------------


def test_inline_dagflow_commands_exist() -> None:
    spans = [s for s in re.findall(r"`([^`\n]+)`", doc()) if s.startswith("dagflow ")]
    assert spans
    for span in spans:
        words = shlex.split(span)[1:]
        command, rest = resolve(cli, list(words))
        assert not isinstance(command, click.Group) or not rest, span
        options = {o for p in command.params if isinstance(p, click.Option) for o in p.opts}
        for word in rest:
            if word.startswith("-"):
                assert word in options, f"`{span}`: no option {word}"


def test_health_routes_are_public() -> None:
    routes = {(r.method, r.path): r for r in health.ROUTES}
    named = re.findall(r"`(GET) (/\w+)`", doc())
    assert {path for _, path in named} >= {"/healthz", "/readyz"}
    for method, path in named:
        assert routes[(method, path)].access == "public", path


def test_files_it_names_exist() -> None:
    for target in re.findall(r"\]\(([^)#:]+)\)", doc()):
        assert (DOC.parent / target).exists(), target
    named = re.findall(r"`([\w./-]+\.(?:yml|md|py|toml))`", doc())
    assert "temporal-dev.yml" in named
    for name in named:
        assert (REPO / name).exists() or (DOC.parent / name).exists(), name
