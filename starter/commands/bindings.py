"""``dagflow bindings`` and ``dagflow commands``: command types bound to definitions, and the
commands that start the bound runs."""

from __future__ import annotations

import uuid
from typing import Any

import click

from starter.api.commands import Command
from starter.client import BindingsApi, DagflowClient
from starter.commands.connection import Connection, api_options, call
from starter.commands.output import (
    echo_fields,
    echo_model,
    echo_page,
    echo_table,
    json_argument,
    json_option,
    page_options,
    when,
)


def _bindings(client: DagflowClient, instance: bool) -> BindingsApi:
    return client.instance.bindings if instance else client.bindings


def instance_option(fn: Any) -> Any:
    """``--instance``: the instance's bindings, which run first for every tenant."""
    return click.option(
        "--instance",
        is_flag=True,
        help="Instance bindings: they run first for every tenant (needs an instance key).",
    )(fn)


@click.group("bindings")
def bindings_group() -> None:
    """Bindings of command types to definitions: a command starts every bound run.

    \b
    Example:
      dagflow bindings create order.created order-fulfilment
      dagflow bindings list --type order.created
    """


@bindings_group.command("list")
@click.option("--type", "command_type", help="Only bindings of this command type.")
@click.option(
    "--scope",
    type=click.Choice(["tenant", "instance", "all"]),
    help="The tenant's own, the instance's, or both (default).",
)
@page_options
@instance_option
@json_option
@api_options
def list_cmd(
    command_type: str | None,
    scope: str | None,
    limit: int | None,
    cursor: str | None,
    instance: bool,
    as_json: bool,
    api: Connection,
) -> None:
    """List bindings by type, in the order a command starts their runs (instance first).

    \b
    Example:
      dagflow bindings list --type order.created
    """
    page = call(
        api,
        lambda client: _bindings(client, instance).list(
            type=command_type, scope=scope, limit=limit, cursor=cursor
        ),
    )
    echo_page(
        page,
        as_json,
        ["ID", "TYPE", "SCOPE", "DEFINITION", "VERSION", "POSITION", "CREATED"],
        lambda b: [
            str(b.id),
            b.type,
            b.scope,
            b.definition,
            str(b.version) if b.version is not None else "current",
            str(b.position),
            when(b.created_at),
        ],
        empty="no bindings",
    )


@bindings_group.command("create")
@click.argument("command_type", metavar="TYPE")
@click.argument("definition")
@click.option("--version", type=click.IntRange(min=1), help="Pin a version (default: current).")
@click.option("--position", type=click.IntRange(min=0), help="Order among the type's bindings.")
@instance_option
@json_option
@api_options
def create_cmd(
    command_type: str,
    definition: str,
    version: int | None,
    position: int | None,
    instance: bool,
    as_json: bool,
    api: Connection,
) -> None:
    """Bind a command type to a definition: its commands start a run of it.

    \b
    Example:
      dagflow bindings create order.created order-fulfilment --version 3
      dagflow bindings create order.created audit --instance   # with an instance key
    """
    binding = call(
        api,
        lambda client: _bindings(client, instance).create(
            command_type, definition, version=version, position=position
        ),
    )
    if as_json:
        echo_model(binding)
    else:
        pinned = f" version {binding.version}" if binding.version is not None else ""
        click.echo(
            f"binding {binding.id}: {binding.type} -> {binding.definition}{pinned} "
            f"({binding.scope}, position {binding.position})"
        )


@bindings_group.command("delete")
@click.argument("binding_id", metavar="ID", type=int)
@instance_option
@json_option
@api_options
def delete_cmd(binding_id: int, instance: bool, as_json: bool, api: Connection) -> None:
    """Remove a binding (tenants cannot remove the instance's).

    \b
    Example:
      dagflow bindings delete 12
    """
    binding = call(api, lambda client: _bindings(client, instance).delete(binding_id))
    if as_json:
        echo_model(binding)
    else:
        click.echo(f"binding {binding.id} deleted ({binding.type} -> {binding.definition})")


@click.group("commands")
def commands_group() -> None:
    """Commands: send one to start the runs bound to its type, once per command id.

    \b
    Example:
      dagflow commands send order.created --id order-A-1 --payload '{"order_id": "A-1"}'
    """


@commands_group.command("send")
@click.argument("command_type", metavar="TYPE")
@click.option(
    "--id",
    "command_id",
    help="The command's id: sending it again starts nothing (default: a random one).",
)
@click.option("--payload", "payload_text", help="Input of every bound run: JSON, @FILE or -.")
@json_option
@api_options
def send_cmd(
    command_type: str,
    command_id: str | None,
    payload_text: str | None,
    as_json: bool,
    api: Connection,
) -> None:
    """Send a command: start every run bound to its type (the instance's bindings first).

    Prints the runs it started, one RUN per line.

    \b
    Example:
      dagflow commands send order.created --id order-A-1 --payload @order.json
    """
    payload = json_argument(payload_text, "--payload")
    command_id = command_id or uuid.uuid4().hex
    command = call(api, lambda client: client.commands.send(command_type, command_id, payload))
    if as_json:
        echo_model(command)
        return
    if not command.created:
        click.echo(f"(command {command.id} was sent before: nothing new started)", err=True)
    _echo_runs(command)


def _echo_runs(command: Command) -> None:
    echo_table(
        ["RUN", "VERSION", "SCOPE", "BINDING"],
        ([r.id, str(r.version), r.scope, str(r.binding)] for r in command.runs),
        empty=f"command {command.id} started no runs",
    )


@commands_group.command("list")
@click.option("--type", "command_type", help="Only commands of this type.")
@page_options
@json_option
@api_options
def list_cmd_commands(
    command_type: str | None,
    limit: int | None,
    cursor: str | None,
    as_json: bool,
    api: Connection,
) -> None:
    """List the tenant's commands, newest first.

    \b
    Example:
      dagflow commands list --type order.created
    """
    page = call(
        api, lambda client: client.commands.list(type=command_type, limit=limit, cursor=cursor)
    )
    echo_page(
        page,
        as_json,
        ["ID", "TYPE", "RUNS", "SENT"],
        lambda c: [c.id, c.type, str(len(c.runs)), when(c.created_at)],
        empty="no commands",
    )


@commands_group.command("show")
@click.argument("command_id", metavar="ID")
@json_option
@api_options
def show_cmd(command_id: str, as_json: bool, api: Connection) -> None:
    """Show a command and the runs it started.

    \b
    Example:
      dagflow commands show order-A-1
    """
    command = call(api, lambda client: client.commands.get(command_id))
    if as_json:
        echo_model(command)
        return
    echo_fields(
        [
            ("command", command.id),
            ("type", command.type),
            ("sent", when(command.created_at)),
            ("payload", f"sha256 {command.payload_hash[:12]}"),
        ]
    )
    click.echo()
    _echo_runs(command)


COMMANDS = [bindings_group, commands_group]
