"""temporal-dev.yml and the Dockerfile, checked against the code (no Docker engine needed).

The compose file is parsed and interpolated the way Compose does it; its environment is read
by the real settings classes; its commands are resolved against the real click group; its
setup script and health checks run against the session's Temporal dev server and a real
starter service.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import shlex
import sys
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import click
import pytest
import setuptools
import yaml
from packaging.specifiers import SpecifierSet
from pydantic import AliasChoices, AliasPath
from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey

from starter.cli import cli
from starter.devserver import start_dev_server, temporal_binary
from starter.settings import ServiceSettings
from tests.starter import Databases, running, service_settings
from worker.main import run_worker
from worker.settings import Settings
from workflows import search_attributes

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "temporal-dev.yml"
INSTANCE_KEY = "compose-test-instance-key"

SERVICES = {
    "temporal-postgresql",
    "temporal-schema",
    "temporal",
    "temporal-setup",
    "temporal-ui",
    "dagflow-postgresql",
    "dagflow-migrate",
    "dagflow-worker",
    "dagflow-starter",
}
DAGFLOW_ROLES = {
    # service -> the `dagflow` command it runs and the settings class that command reads
    "dagflow-migrate": (("db", "upgrade"), ServiceSettings),
    "dagflow-worker": (("worker",), Settings),
    "dagflow-starter": (("serve",), ServiceSettings),
}
REQUIRED = {
    # What each role cannot run without in a container (the code's defaults are for a laptop).
    "dagflow-migrate": {"DAGFLOW_DATABASE_URL"},
    "dagflow-worker": {"DAGFLOW_TEMPORAL_ADDRESS"},
    "dagflow-starter": {
        "DAGFLOW_TEMPORAL_ADDRESS",
        "DAGFLOW_DATABASE_URL",
        "DAGFLOW_HOST",
        "DAGFLOW_INSTANCE_KEY",
    },
}
SECRET_NAME = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|_KEY$")


# --- reading the settings classes -------------------------------------------------------------


def env_names(model: type[BaseSettings]) -> dict[str, str]:
    """Environment variable -> field, as pydantic-settings reads them (prefix, aliases, case)."""
    config = model.model_config
    prefix = config.get("env_prefix", "")
    prefix_aliases = config.get("env_prefix_target", "variable") in ("alias", "all")
    names: dict[str, str] = {}
    for name, info in model.model_fields.items():
        alias = info.validation_alias or info.alias
        if alias is None:
            candidates = [prefix + name]
        else:
            choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
            candidates = [str(c.path[0] if isinstance(c, AliasPath) else c) for c in choices]
            if prefix_aliases:
                candidates = [prefix + c for c in candidates]
        for candidate in candidates:
            names[candidate if config.get("case_sensitive") else candidate.upper()] = name
    return names


def every_setting() -> dict[str, str]:
    """Every variable a dagflow process (worker or starter) reads as a setting."""
    return {**env_names(Settings), **env_names(ServiceSettings)}


@contextmanager
def only_env(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ with ``env`` set and every other DAGFLOW_* variable removed."""
    with mock.patch.dict(os.environ, env):
        for name in [n for n in os.environ if n.startswith("DAGFLOW_") and n not in env]:
            del os.environ[name]
        yield


def settings_from(model: type[BaseSettings], env: Mapping[str, str]) -> Any:
    """``model`` as the process reads it from ``env``."""
    with only_env(env):
        return model()


def test_env_names_are_what_pydantic_settings_reads() -> None:
    names = env_names(ServiceSettings)
    assert names["DAGFLOW_PORT"] == "port"
    assert names["DAGFLOW_TEMPORAL_ADDRESS"] == "temporal_address"
    assert settings_from(ServiceSettings, {"DAGFLOW_PORT": "9123"}).port == 9123
    assert "DAGFLOW_PORT" not in env_names(Settings)


# --- reading the compose file the way Compose does -------------------------------------------

_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*)|(?P<lone>))"
)
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.S)


class MissingVariableError(Exception):
    """A ``${VAR:?message}`` whose variable is not set."""


@dataclass
class Interpolation:
    """Compose's variable interpolation over one environment, recording what it read."""

    env: Mapping[str, str]
    read: dict[str, str | None] = field(default_factory=dict)  # name -> operator used

    def text(self, value: str) -> str:
        def substitute(m: re.Match[str]) -> str:
            if m["escaped"]:
                return "$"
            if m["named"]:
                return self._value(m["named"], None, "")
            if m["braced"] is not None:
                braced = _BRACED.fullmatch(m["braced"])
                if not braced:
                    raise ValueError(f"invalid interpolation ${{{m['braced']}}}")
                return self._value(braced["name"], braced["op"], braced["arg"] or "")
            raise ValueError(f"a lone $ (write $$ for a literal one) in {value!r}")

        return _REFERENCE.sub(substitute, value)

    def _value(self, name: str, op: str | None, arg: str) -> str:
        self.read[name] = op
        value = self.env.get(name)
        is_set = value is not None
        if op in (":?", "?") and not (value if op == ":?" else is_set):
            raise MissingVariableError(f"{name}: {arg}")
        if op == ":-" and not value:
            return arg
        if op == "-" and not is_set:
            return arg
        if op in (":+", "+"):
            return arg if (value if op == ":+" else is_set) else ""
        return value or ""

    def tree(self, node: Any) -> Any:
        if isinstance(node, str):
            return self.text(node)
        if isinstance(node, list):
            return [self.tree(item) for item in node]
        if isinstance(node, dict):
            return {key: self.tree(value) for key, value in node.items()}
        return node


def raw_compose() -> dict[str, Any]:
    """The compose file as YAML (anchors and merge keys resolved), not interpolated."""
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file interpolated with ``env`` (default: just the instance key set)."""
    env = {"DAGFLOW_INSTANCE_KEY": INSTANCE_KEY} if env is None else env
    result: dict[str, Any] = Interpolation(env).tree(raw_compose())
    return result


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (Compose accepts a mapping or KEY=VALUE list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def published(service: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of every published port."""
    ports = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            ports.append(
                (port.get("host_ip", "0.0.0.0"), int(port["published"]), int(port["target"]))
            )
            continue
        parts = str(port).split("/")[0].split(":")
        assert len(parts) in (2, 3), f"{port}: give the host port"
        ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        ports.append((ip, int(parts[-2]), int(parts[-1])))
    return ports


def script(service: Mapping[str, Any]) -> str:
    """The shell script of a one-shot service (``command: [/bin/sh, -c, SCRIPT]``)."""
    command = service["command"]
    assert command[:2] == ["/bin/sh", "-c"] and len(command) == 3, command
    return str(command[2])


def healthcheck_code(service: Mapping[str, Any]) -> str:
    """The Python code of a ``[CMD, python, -c, CODE]`` health check."""
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"] and len(test) == 4, test
    return str(test[3])


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def seconds(duration: str) -> float:
    """A Compose duration (``1m30s``, ``30s``, ``500ms``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


# --- the file on its own ----------------------------------------------------------------------


def test_services_are_the_documented_ones() -> None:
    assert set(compose()["services"]) == SERVICES


def test_every_dependency_waits_for_health_or_completion() -> None:
    services = compose()["services"]
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for dependency, spec in depends.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = spec.get("condition")
            target = services[dependency]
            if condition == "service_healthy":
                assert "healthcheck" in target, f"{dependency} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert target.get("restart", "no") == "no", f"{dependency} is not one-shot"
            else:
                pytest.fail(f"{name} -> {dependency}: condition {condition!r} orders nothing")


def dependency_closure(services: Mapping[str, Any], name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        for dependency in services[todo.pop()].get("depends_on") or {}:
            assert dependency != name, f"dependency cycle through {name}"
            if dependency not in seen:
                seen.add(dependency)
                todo.append(dependency)
    return seen


def test_start_order() -> None:
    services = compose()["services"]
    temporal_ready = {"temporal-setup", "temporal", "temporal-schema", "temporal-postgresql"}
    assert dependency_closure(services, "dagflow-worker") == temporal_ready
    assert dependency_closure(services, "dagflow-starter") == temporal_ready | {
        "dagflow-migrate",
        "dagflow-postgresql",
    }
    assert dependency_closure(services, "temporal-ui") >= {"temporal"}


def test_images_are_pinned() -> None:
    for name, service in compose()["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?", tag), f"{name}: pin {image}"


def test_temporal_images_are_one_release() -> None:
    images = {s["image"] for s in compose()["services"].values() if "image" in s}
    server = {i.split(":")[1] for i in images if i.startswith("temporalio/server:")}
    tools = {i.split(":")[1] for i in images if i.startswith("temporalio/admin-tools:")}
    assert len(server) == 1 and server == tools


def test_published_ports_match_the_code() -> None:
    services = compose()["services"]
    starter = settings_from(ServiceSettings, environment(services["dagflow-starter"]))
    ui_port = inspect.signature(start_dev_server).parameters["ui_port"].default
    expected = {
        # the starter on the port `dagflow serve` uses by default
        "dagflow-starter": [("127.0.0.1", ServiceSettings.model_fields["port"].default,
                             starter.port)],
        # Temporal where every dagflow command looks by default (--address)
        "temporal": [("127.0.0.1", port_of(Settings.model_fields["temporal_address"].default),
                      port_of(starter.temporal_address))],
        # the Web UI where `dagflow dev` puts it; 8080 is the starter's
        "temporal-ui": [("127.0.0.1", ui_port,
                         int(environment(services["temporal-ui"])["TEMPORAL_UI_PORT"]))],
    }  # fmt: skip
    actual = {name: published(s) for name, s in services.items() if published(s)}
    assert actual == expected
    host_ports = [port for ports in actual.values() for _, port, _ in ports]
    assert len(host_ports) == len(set(host_ports))


def test_stop_grace_outlasts_the_shutdown_grace() -> None:
    services = compose()["services"]
    for name, (_, model) in DAGFLOW_ROLES.items():
        grace = settings_from(model, environment(services[name])).shutdown_grace
        assert seconds(services[name]["stop_grace_period"]) > grace, name


# --- environment: what dagflow reads, and no secrets ------------------------------------------


def test_dagflow_variables_are_settings_the_process_reads() -> None:
    services = compose()["services"]
    for name, service in services.items():
        dagflow_vars = {k for k in environment(service) if k.startswith("DAGFLOW_")}
        if name not in DAGFLOW_ROLES:
            assert not dagflow_vars, f"{name} is not a dagflow process: {dagflow_vars}"
            continue
        model = DAGFLOW_ROLES[name][1]
        unknown = dagflow_vars - set(env_names(model))
        assert not unknown, f"{name} sets variables {model.__name__} never reads: {unknown}"
        missing = REQUIRED[name] - dagflow_vars
        assert not missing, f"{name} needs {missing}"


def test_host_variables_named_dagflow_are_settings() -> None:
    interpolation = Interpolation({"DAGFLOW_INSTANCE_KEY": INSTANCE_KEY})
    interpolation.tree(raw_compose())
    for name in interpolation.read:
        if name.startswith("DAGFLOW_"):
            assert name in every_setting(), f"${{{name}}} reads like a setting but is none"


def test_worker_and_starter_agree_on_temporal() -> None:
    services = compose()["services"]
    worker = settings_from(Settings, environment(services["dagflow-worker"]))
    starter = settings_from(ServiceSettings, environment(services["dagflow-starter"]))
    where = (worker.temporal_address, worker.namespace, worker.task_queue)
    assert where == (starter.temporal_address, starter.namespace, starter.task_queue)
    host, port = worker.temporal_address.rsplit(":", 1)
    assert host == "temporal" and port == "7233"
    setup = environment(services["temporal-setup"])
    ui = environment(services["temporal-ui"])
    assert setup["TEMPORAL_ADDRESS"] == ui["TEMPORAL_ADDRESS"] == worker.temporal_address
    assert setup["TEMPORAL_NAMESPACE"] == ui["TEMPORAL_DEFAULT_NAMESPACE"] == worker.namespace


def test_starter_settings() -> None:
    services = compose()["services"]
    starter = settings_from(ServiceSettings, environment(services["dagflow-starter"]))
    migrate = settings_from(ServiceSettings, environment(services["dagflow-migrate"]))
    assert starter.host == "0.0.0.0"
    assert starter.instance_key is not None
    assert starter.instance_key.get_secret_value() == INSTANCE_KEY
    assert migrate.database_url == starter.database_url
    url = make_url(starter.database_url)
    database = environment(services["dagflow-postgresql"])
    temporal_database = environment(services["temporal-postgresql"])
    assert url.drivername == "postgresql+asyncpg"
    assert (url.host, url.port) == ("dagflow-postgresql", 5432)
    assert (url.username, url.password, url.database) == (
        database["POSTGRES_USER"],
        database["POSTGRES_PASSWORD"],
        database["POSTGRES_DB"],
    )
    assert url.username != temporal_database["POSTGRES_USER"]


def test_worker_settings_parse() -> None:
    worker = settings_from(Settings, environment(compose()["services"]["dagflow-worker"]))
    assert worker.allowed_networks == []
    allowing = compose({"DAGFLOW_INSTANCE_KEY": "k", "DAGFLOW_ALLOWED_NETWORKS": "10.1.0.0/16"})
    worker = settings_from(Settings, environment(allowing["services"]["dagflow-worker"]))
    assert worker.allowed_networks == ["10.1.0.0/16"]


def test_no_secrets_baked_in() -> None:
    with pytest.raises(MissingVariableError, match="DAGFLOW_INSTANCE_KEY"):
        compose({})
    interpolation = Interpolation({"DAGFLOW_INSTANCE_KEY": INSTANCE_KEY})
    interpolation.tree(raw_compose())
    required = {name for name, op in interpolation.read.items() if op in (":?", "?")}
    assert required == {"DAGFLOW_INSTANCE_KEY"}
    unset = {name for name, op in interpolation.read.items() if op is None}
    assert not unset, f"variables without a default or a message: {unset}"
    raw = raw_compose()["services"]
    for name, service in raw.items():
        for key, value in environment(service).items():
            secret = SECRET_NAME.search(key) or (key.endswith("DATABASE_URL") and "@" in value)
            if not secret:
                continue
            assert "${" in value, f"{name}.{key} is written into the file"
            defaults = re.findall(r"\$\{[A-Z_]+:-([^}]*)\}", value)
            assert all("dev-only" in d for d in defaults), f"{name}.{key}: say dev-only"


def test_database_passwords_agree() -> None:
    services = compose(
        {
            "DAGFLOW_INSTANCE_KEY": "k",
            "POSTGRES_TEMPORAL_PASSWORD": "t-secret",
            "POSTGRES_DAGFLOW_PASSWORD": "d-secret",
        }
    )["services"]
    assert environment(services["temporal-postgresql"])["POSTGRES_PASSWORD"] == "t-secret"
    assert environment(services["temporal-schema"])["SQL_PASSWORD"] == "t-secret"
    assert environment(services["temporal"])["POSTGRES_PWD"] == "t-secret"
    assert environment(services["dagflow-postgresql"])["POSTGRES_PASSWORD"] == "d-secret"
    for name in ("dagflow-migrate", "dagflow-starter"):
        url = environment(services[name])["DAGFLOW_DATABASE_URL"]
        assert make_url(url).password == "d-secret"


def test_interpolation_rejects_a_lone_dollar() -> None:
    with pytest.raises(ValueError, match="lone"):
        Interpolation({}).text("echo $(date)")
    assert Interpolation({}).text("echo $$(date) $${X:-y}") == "echo $(date) ${X:-y}"


# --- Temporal's own setup ---------------------------------------------------------------------


def test_schema_setup_targets_the_servers_databases() -> None:
    services = compose()["services"]
    server = environment(services["temporal"])
    tools = environment(services["temporal-schema"])
    postgres = environment(services["temporal-postgresql"])
    databases = set(re.findall(r"--db (\S+)", script(services["temporal-schema"])))
    assert databases == {server["DBNAME"], server["VISIBILITY_DBNAME"]}
    assert tools["SQL_HOST"] == server["POSTGRES_SEEDS"] == "temporal-postgresql"
    assert tools["SQL_USER"] == server["POSTGRES_USER"] == postgres["POSTGRES_USER"]
    assert tools["SQL_PLUGIN"] == server["DB"]
    assert tools["SQL_PORT"] == server["DB_PORT"]


def test_dynamic_config_is_mounted_where_the_server_reads_it() -> None:
    loaded = compose()
    server = loaded["services"]["temporal"]
    (mount,) = server["configs"]
    assert mount["target"] == environment(server)["DYNAMIC_CONFIG_FILE_PATH"]
    content = yaml.safe_load(loaded["configs"][mount["source"]]["content"])
    assert content["limit.maxIDLength"] == [{"value": 1000}]
    for key, values in content.items():
        assert isinstance(values, list) and all("value" in v for v in values), key


def type_name(key: SearchAttributeKey[Any]) -> str:
    """The `temporal` CLI's name of a key's type (KEYWORD_LIST -> KeywordList)."""
    return "".join(part.title() for part in key.indexed_value_type.name.split("_"))


EXPECTED_ATTRIBUTES = {key.name: type_name(key) for key in search_attributes.ALL}


def created_attributes(commands: str) -> dict[str, str]:
    """Search attributes and types named by `temporal operator search-attribute create` lines."""
    created: dict[str, str] = {}
    for line in commands.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words[:4] != ["temporal", "operator", "search-attribute", "create"]:
            continue
        names = [words[i + 1] for i, w in enumerate(words) if w == "--name"]
        (kind,) = [words[i + 1] for i, w in enumerate(words) if w == "--type"]
        for name in names:
            assert name not in created, f"{name} created twice"
            created[name] = kind
    return created


def test_setup_creates_exactly_dagflows_search_attributes() -> None:
    setup = script(compose()["services"]["temporal-setup"])
    assert created_attributes(setup) == EXPECTED_ATTRIBUTES


async def custom_attributes(client: Client, namespace: str) -> dict[str, str]:
    answer = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return {name: kind for name, kind in answer.custom_attributes.items()}


def expected_server_types() -> dict[str, int]:
    return {key.name: int(key.indexed_value_type) for key in search_attributes.ALL}


async def run_shell(text: str, env: Mapping[str, str], within: float = 180) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        text,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), within)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_setup_script_runs_against_a_real_temporal(
    client: Client, temporal_address: str
) -> None:
    """The one-shot's script, as Compose hands it to the shell, on the dev server: a fresh
    namespace gets every search attribute with its type, and a second run changes nothing."""
    service = compose()["services"]["temporal-setup"]
    namespace = f"compose-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        **environment(service),
        "TEMPORAL_ADDRESS": temporal_address,
        "TEMPORAL_NAMESPACE": namespace,
        "PATH": f"{Path(temporal_binary()).parent}{os.pathsep}{os.environ['PATH']}",
    }
    for attempt in ("first", "again"):
        code, out = await run_shell(script(service), env)
        assert code == 0, f"{attempt}: {out}"
        assert f"namespace {namespace} is ready" in out
    assert await custom_attributes(client, namespace) == expected_server_types()


async def test_setup_script_fails_when_temporal_never_answers() -> None:
    service = compose()["services"]["temporal-setup"]
    assert "-ge 60" in script(service)
    text = script(service).replace("-ge 60", "-ge 2")  # give up after 2 tries, not 60
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
        "TEMPORAL_NAMESPACE": "nowhere",
        "PATH": f"{Path(temporal_binary()).parent}{os.pathsep}{os.environ['PATH']}",
    }
    code, out = await run_shell(text, env, within=60)
    assert code != 0
    assert "gave up waiting for: temporal operator cluster health" in out


# --- the dagflow services ---------------------------------------------------------------------


def resolve(group: click.Group, words: list[str]) -> tuple[click.Command, list[str]]:
    """The command that ``dagflow WORDS...`` runs, and the words left for it to parse (through
    ``get_command``, as click does: the top group loads its commands lazily)."""
    command: click.Command = group
    ctx = click.Context(group, info_name="dagflow")
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        found = command.get_command(ctx, words[0])
        assert found is not None, f"`{ctx.command_path}` has no {words[0]!r}"
        ctx = click.Context(found, parent=ctx, info_name=words.pop(0))
        command = found
    return command, words


def test_resolve_rejects_what_dagflow_lacks() -> None:
    with pytest.raises(AssertionError, match="no 'wrker'"):
        resolve(cli, ["wrker"])
    with pytest.raises(AssertionError, match="no 'downgrade'"):
        resolve(cli, ["db", "downgrade"])


def test_dagflow_services_run_real_subcommands() -> None:
    services = compose()["services"]
    for name, (expected, _) in DAGFLOW_ROLES.items():
        words = list(services[name]["command"])
        command, rest = resolve(cli, list(words))
        assert not isinstance(command, click.Group), f"{name}: `dagflow {words}` is a group"
        assert tuple(words[: len(words) - len(rest)]) == expected, name
        command.make_context(" ".join(expected), list(rest))  # its flags parse


def test_dagflow_services_use_the_dockerfile() -> None:
    services = compose()["services"]
    dagflow = {name for name, s in services.items() if "build" in s}
    assert dagflow == set(DAGFLOW_ROLES)
    for name in dagflow:
        build = services[name]["build"]
        context = (COMPOSE_FILE.parent / build["context"]).resolve()
        assert context == REPO, name
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name


async def run_python(code: str, env: Mapping[str, str], within: float = 60) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DAGFLOW_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        env={**clean, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), within)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_worker_healthcheck_is_healthy_only_while_polling(temporal_address: str) -> None:
    service = compose()["services"]["dagflow-worker"]
    code = healthcheck_code(service)
    env = {
        **environment(service),
        "DAGFLOW_TEMPORAL_ADDRESS": temporal_address,
        "DAGFLOW_TASK_QUEUE": f"tq-{uuid.uuid4()}",
    }
    status, out = await run_python(code, env)
    assert (status, out.strip()) == (1, "not polling")

    stop = asyncio.Event()
    settings = settings_from(Settings, env)
    worker = asyncio.create_task(run_worker(settings, stop=stop))
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            status, out = await run_python(code, env)
            if status == 0 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)
        assert (status, out.strip()) == (0, "polling")
    finally:
        stop.set()
        await worker


async def test_worker_healthcheck_fails_without_temporal() -> None:
    service = compose()["services"]["dagflow-worker"]
    env = {**environment(service), "DAGFLOW_TEMPORAL_ADDRESS": "127.0.0.1:1"}
    status, out = await run_python(healthcheck_code(service), env)
    assert status == 1 and "cannot ask Temporal" in out


async def test_starter_healthcheck_follows_readyz(temporal_address: str, tmp_path: Path) -> None:
    service = compose()["services"]["dagflow-starter"]
    code = healthcheck_code(service)
    databases = Databases("sqlite", tmp_path)
    for address, healthy in ((temporal_address, True), ("127.0.0.1:1", False)):
        settings = service_settings(await databases.fresh(), address)
        async with running(settings) as starter:
            env = {**environment(service), "DAGFLOW_PORT": str(port_of(starter.base_url))}
            status, out = await run_python(code, env)
        if healthy:
            assert status == 0, out
        else:
            assert status == 1 and "503" in out, out


# --- the Dockerfile ---------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = (REPO / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines()
                                            if not line.lstrip().startswith("#")))  # fmt: skip
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    return instructions


def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _glob(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` (relative to the context) out: the last matching
    pattern wins, ``!`` re-includes, and a pattern matching a folder covers what is in it."""
    parts = path.split("/")
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _glob(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            result = not negate
    return result


def test_dockerignore_matcher() -> None:
    patterns = ["**/__pycache__", "tests", "*.egg-info", "!tests/keep"]
    assert ignored("starter/__pycache__/x.pyc", patterns)
    assert ignored("__pycache__/x.pyc", patterns)
    assert ignored("tests/test_a.py", patterns)
    assert ignored("dagflow.egg-info/PKG-INFO", patterns)
    assert not ignored("tests/keep", patterns)
    assert not ignored("starter/app.py", patterns)


def copied_files() -> set[str]:
    """Files the Dockerfile's COPY instructions put into the image's build folder."""
    patterns = dockerignore()
    files: set[str] = set()
    for keyword, args in dockerfile():
        if keyword != "COPY":
            continue
        sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
        for source in sources:
            path = REPO / source
            relative = path.relative_to(REPO).as_posix()
            assert path.exists(), f"COPY {source}: not in the repository"
            assert not ignored(relative, patterns), f"COPY {source}: excluded by .dockerignore"
            if path.is_file():
                files.add(relative)
                continue
            for root, dirs, names in os.walk(path):
                base = Path(root).relative_to(REPO).as_posix()
                dirs[:] = [d for d in dirs if not ignored(f"{base}/{d}", patterns)]
                files |= {f"{base}/{n}" for n in names if not ignored(f"{base}/{n}", patterns)}
    return files


def files_the_wheel_needs() -> set[str]:
    """pyproject.toml, its readme, every module of the packages it finds, their package data."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    tool = pyproject["tool"]["setuptools"]
    packages = setuptools.find_packages(where=str(REPO), **tool["packages"]["find"])
    needed = {"pyproject.toml", pyproject["project"]["readme"]}
    for package in packages:
        folder = REPO / package.replace(".", "/")
        needed |= {p.relative_to(REPO).as_posix() for p in folder.glob("*.py")}
        for owner, patterns in tool.get("package-data", {}).items():
            if owner in ("*", package):
                for pattern in patterns:
                    needed |= {p.relative_to(REPO).as_posix() for p in folder.glob(pattern)}
    return needed


def test_dockerfile_copies_what_pip_install_needs() -> None:
    needed = files_the_wheel_needs()
    assert any(path.startswith("starter/migrations/versions/") for path in needed)
    missing = needed - copied_files()
    assert not missing, f"the image's `pip install .` would lack {sorted(missing)}"


def test_dockerfile_installs_runs_dagflow_as_non_root() -> None:
    instructions = dockerfile()
    keywords = [k for k, _ in instructions]
    base = instructions[0]
    assert base[0] == "FROM"
    found = re.fullmatch(r"python:(\d+)\.(\d+)\.\d+-slim(-\w+)?", base[1])
    assert found, f"pin a slim Python image: {base[1]}"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f"{found[1]}.{found[2]}" in SpecifierSet(requires)

    install = [i for i, (k, a) in enumerate(instructions) if k == "RUN" and
               re.search(r"pip install (--?\S+ )*\.( |$)", a)]  # fmt: skip
    assert len(install) == 1, "one `pip install .`"
    assert max(i for i, k in enumerate(keywords) if k == "COPY") < install[0]

    users = [a for k, a in instructions if k == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert keywords.index("USER") > install[0]

    (entrypoint,) = [json.loads(a) for k, a in instructions if k == "ENTRYPOINT"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["dagflow"] and "dagflow" in scripts

    (expose,) = [a for k, a in instructions if k == "EXPOSE"]
    assert int(expose) == ServiceSettings.model_fields["port"].default


def test_compose_commands_are_arguments_of_the_entrypoint() -> None:
    """The services give `command:` only (the image's ENTRYPOINT is `dagflow`)."""
    for name in DAGFLOW_ROLES:
        service = compose()["services"][name]
        assert "entrypoint" not in service, name
        assert service["command"][0] != "dagflow", f"{name}: the entrypoint says dagflow"
