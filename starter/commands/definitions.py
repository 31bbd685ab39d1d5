"""``dagflow definitions``: stored definitions and their versions, through the service."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click
import yaml

from starter.api import DefinitionDetail, Page, Validation, Version, VersionInfo
from starter.client import DagflowClient, DefinitionsApi
from starter.commands.connection import Connection, api_options, call
from starter.commands.exits import BAD_INPUT
from starter.commands.graph import graph_cmd
from starter.commands.output import (
    echo_fields,
    echo_model,
    echo_page,
    json_option,
    page_options,
    read_text,
    when,
    yes_no,
)
from starter.errors import NotFound


def instance_option(fn: Any) -> Any:
    """``--instance``: act on the instance's definitions (with an instance key)."""
    return click.option(
        "--instance",
        is_flag=True,
        help="The instance's definitions, shared by every tenant (needs an instance key).",
    )(fn)


def scope(client: DagflowClient, instance: bool) -> DefinitionsApi:
    """The tenant's or the instance's definitions."""
    return client.instance.definitions if instance else client.definitions


@click.group("definitions")
def definitions_group() -> None:
    """Stored definitions: push versions, list, show, roll back, validate.

    \b
    Example:
      dagflow definitions push examples/order-fulfilment.yaml
      dagflow definitions list
    """


@definitions_group.command("push")
@click.argument("file", metavar="FILE")
@instance_option
@json_option
@api_options
def push_cmd(file: str, instance: bool, as_json: bool, api: Connection) -> None:
    """Store a definition file (YAML or JSON; - reads stdin): new, or a new version.

    The file's `name` says which definition. Pushing the current content again adds no
    version. The service checks the file first and answers every problem (exit 2).

    \b
    Example:
      dagflow definitions push examples/order-fulfilment.yaml
    """
    text = read_text(file)
    name = _name_in(text)

    async def push(client: DagflowClient) -> DefinitionDetail:
        definitions = scope(client, instance)
        if name is None:
            return await definitions.create(text)
        try:
            return await definitions.update(name, text)
        except NotFound:
            return await definitions.create(text)

    stored = call(api, push)
    if as_json:
        echo_model(stored)
    elif stored.created:
        click.echo(f"{stored.name}: version {stored.version.version} stored and current")
    else:
        click.echo(f"{stored.name}: unchanged, version {stored.version.version} is current")


def _name_in(text: str) -> str | None:
    """The ``name`` of a definition text, if it can be read (the service reports the rest)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name and "/" not in name else None


@definitions_group.command("list")
@click.option("--prefix", help="Only names starting with this.")
@click.option(
    "--active/--inactive", default=None, help="Only active (or only deactivated) definitions."
)
@click.option("--templates/--no-templates", default=None, help="Only templates (or none).")
@click.option(
    "--scope",
    "which",
    type=click.Choice(["tenant", "instance", "all"]),
    help="The tenant's own, the instance's, or both (default).",
)
@page_options
@instance_option
@json_option
@api_options
def list_cmd(
    prefix: str | None,
    active: bool | None,
    templates: bool | None,
    which: str | None,
    limit: int | None,
    cursor: str | None,
    instance: bool,
    as_json: bool,
    api: Connection,
) -> None:
    """List definitions by name, with their current version.

    \b
    Example:
      dagflow definitions list --prefix order --active
    """
    page = call(
        api,
        lambda client: scope(client, instance).list(
            limit=limit,
            cursor=cursor,
            name_prefix=prefix,
            active=active,
            template=templates,
            scope=which,
        ),
    )
    echo_page(
        page,
        as_json,
        ["NAME", "VERSION", "SCOPE", "ACTIVE", "TEMPLATE", "UPDATED", "DESCRIPTION"],
        lambda d: [
            d.name,
            str(d.current_version),
            d.scope,
            yes_no(d.active),
            yes_no(d.is_template),
            when(d.updated_at),
            d.description or "",
        ],
        empty="no definitions",
    )


@definitions_group.command("show")
@click.argument("name")
@click.option("--version", type=click.IntRange(min=1), help="Show this version, not the current.")
@instance_option
@json_option
@api_options
def show_cmd(
    name: str, version: int | None, instance: bool, as_json: bool, api: Connection
) -> None:
    """Show a definition: its state, its current (or a given) version and the content.

    \b
    Example:
      dagflow definitions show order-fulfilment --version 2
    """
    if version is not None:
        shown = call(api, lambda client: scope(client, instance).version(name, version))
        if as_json:
            echo_model(shown)
            return
        _echo_version(name, shown)
        return
    detail = call(api, lambda client: scope(client, instance).get(name))
    if as_json:
        echo_model(detail)
        return
    echo_fields(
        [
            ("name", detail.name),
            ("description", detail.description or "-"),
            ("scope", detail.scope),
            ("current", f"version {detail.current_version}"),
            ("active", yes_no(detail.active)),
            ("template", yes_no(detail.is_template)),
            ("created", when(detail.created_at)),
            ("updated", when(detail.updated_at)),
        ]
    )
    click.echo()
    _echo_version(name, detail.version)


def _echo_version(name: str, version: Version) -> None:
    click.echo(
        f"# {name} version {version.version}, by {version.author} ({version.author_key}) "
        f"at {when(version.created_at)}, sha256 {version.content_hash[:12]}"
    )
    click.echo(yaml.safe_dump(version.content, sort_keys=False, allow_unicode=True).rstrip())


@definitions_group.command("versions")
@click.argument("name")
@page_options
@instance_option
@json_option
@api_options
def versions_cmd(
    name: str,
    limit: int | None,
    cursor: str | None,
    instance: bool,
    as_json: bool,
    api: Connection,
) -> None:
    """List the versions of a definition, newest first (* marks the current one).

    \b
    Example:
      dagflow definitions versions order-fulfilment
    """

    async def versions(client: DagflowClient) -> tuple[Page[VersionInfo], DefinitionDetail]:
        definitions = scope(client, instance)
        page, detail = await asyncio.gather(
            definitions.versions(name, limit=limit, cursor=cursor), definitions.get(name)
        )
        return page, detail

    page, detail = call(api, versions)
    echo_page(
        page,
        as_json,
        ["VERSION", "CREATED", "AUTHOR", "SHA256"],
        lambda v: [
            f"{v.version}{' *' if v.version == detail.current_version else ''}",
            when(v.created_at),
            f"{v.author} ({v.author_key})",
            v.content_hash[:12],
        ],
        empty="no versions",
    )


@definitions_group.command("rollback")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@instance_option
@json_option
@api_options
def rollback_cmd(name: str, version: int, instance: bool, as_json: bool, api: Connection) -> None:
    """Make an earlier version the current one again (new runs start with it).

    \b
    Example:
      dagflow definitions rollback order-fulfilment 2
    """
    detail = call(api, lambda client: scope(client, instance).rollback(name, version))
    if as_json:
        echo_model(detail)
    else:
        click.echo(f"{detail.name}: version {detail.current_version} is current")


@definitions_group.command("deactivate")
@click.argument("name")
@instance_option
@json_option
@api_options
def deactivate_cmd(name: str, instance: bool, as_json: bool, api: Connection) -> None:
    """Stop new runs of a definition (runs already started go on; versions stay).

    \b
    Example:
      dagflow definitions deactivate order-fulfilment
    """
    detail = call(api, lambda client: scope(client, instance).deactivate(name))
    if as_json:
        echo_model(detail)
    else:
        click.echo(f"{detail.name}: deactivated")


@definitions_group.command("activate")
@click.argument("name")
@instance_option
@json_option
@api_options
def activate_cmd(name: str, instance: bool, as_json: bool, api: Connection) -> None:
    """Let runs of a deactivated definition start again.

    \b
    Example:
      dagflow definitions activate order-fulfilment
    """
    detail = call(api, lambda client: scope(client, instance).activate(name))
    if as_json:
        echo_model(detail)
    else:
        click.echo(f"{detail.name}: active")


@definitions_group.command("validate")
@click.argument("file", metavar="FILE")
@json_option
@api_options
def validate_cmd(file: str, as_json: bool, api: Connection) -> None:
    """Ask the service whether a definition file is valid; nothing is stored.

    Unlike `dagflow validate`, this checks against the step kinds installed where the service
    runs. Exits 0 when valid, 2 with every problem ("FILE: path: message" on stderr).

    \b
    Example:
      dagflow definitions validate order.yaml
    """
    text = read_text(file)
    result: Validation = call(api, lambda client: client.definitions.validate(text))
    if as_json:
        echo_model(result)
    elif result.ok:
        click.echo(f"{file}: ok")
    for problem in [] if as_json else result.problems:
        click.echo(f"{file}: {problem.path}: {problem.message}", err=True)
    if not result.ok:
        sys.exit(BAD_INPUT)


# `dagflow definitions graph` is written in starter/commands/graph.py.
definitions_group.add_command(graph_cmd)

COMMANDS = [definitions_group]
