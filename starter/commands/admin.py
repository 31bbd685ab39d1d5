"""``dagflow tenants`` and ``dagflow keys``: instance administration (instance keys only)."""

from __future__ import annotations

from typing import Any

import click

from starter.api import Key
from starter.commands.connection import Connection, api_options, call
from starter.commands.output import (
    echo_fields,
    echo_model,
    echo_page,
    json_option,
    page_options,
    when,
)


@click.group("tenants")
def tenants_group() -> None:
    """Tenants of the instance (needs an instance key).

    \b
    Example:
      dagflow tenants create acme --name "Acme Inc."
      dagflow keys create ci --tenant acme
    """


@tenants_group.command("create")
@click.argument("tenant_id", metavar="ID")
@click.option("--name", help="For people (default: the id).")
@json_option
@api_options
def tenants_create_cmd(tenant_id: str, name: str | None, as_json: bool, api: Connection) -> None:
    """Create a tenant; then issue it a key with `dagflow keys create NAME --tenant ID`.

    \b
    Example:
      dagflow tenants create acme --name "Acme Inc."
    """
    tenant = call(api, lambda client: client.instance.create_tenant(tenant_id, name))
    if as_json:
        echo_model(tenant)
    else:
        click.echo(f"tenant {tenant.id} ({tenant.name}) created")


@tenants_group.command("list")
@page_options
@json_option
@api_options
def tenants_list_cmd(limit: int | None, cursor: str | None, as_json: bool, api: Connection) -> None:
    """List the instance's tenants.

    \b
    Example:
      dagflow tenants list --json
    """
    page = call(api, lambda client: client.instance.list_tenants(limit=limit, cursor=cursor))
    echo_page(
        page,
        as_json,
        ["ID", "NAME", "CREATED"],
        lambda t: [t.id, t.name, when(t.created_at)],
        empty="no tenants",
    )


@tenants_group.command("show")
@click.argument("tenant_id", metavar="ID")
@json_option
@api_options
def tenants_show_cmd(tenant_id: str, as_json: bool, api: Connection) -> None:
    """Show a tenant.

    \b
    Example:
      dagflow tenants show acme
    """
    tenant = call(api, lambda client: client.instance.get_tenant(tenant_id))
    if as_json:
        echo_model(tenant)
    else:
        echo_fields(
            [("id", tenant.id), ("name", tenant.name), ("created", when(tenant.created_at))]
        )


def tenant_option(fn: Any) -> Any:
    """``--tenant``: a tenant's keys; without it, instance keys."""
    return click.option("--tenant", help="The tenant's keys (default: instance keys).")(fn)


@click.group("keys")
def keys_group() -> None:
    """API keys of tenants, and instance keys (needs an instance key).

    \b
    Example:
      dagflow keys create ci --tenant acme
      dagflow keys list --tenant acme
    """


@keys_group.command("create")
@click.argument("name")
@tenant_option
@json_option
@api_options
def keys_create_cmd(name: str, tenant: str | None, as_json: bool, api: Connection) -> None:
    """Issue an API key for a tenant (or an instance key); the key is shown only this once.

    NAME says what the key is for; it is recorded as the author of what the key changes.

    \b
    Example:
      dagflow keys create ci --tenant acme
    """
    new = call(api, lambda client: client.instance.create_key(name, tenant=tenant))
    if as_json:
        echo_model(new)
        return
    owner = f"tenant {new.tenant}" if new.tenant else "the instance"
    click.echo(new.key)
    click.echo(
        f"(key {new.id} '{new.name}' of {owner}: store it now, it is not shown again)", err=True
    )


@keys_group.command("list")
@tenant_option
@page_options
@json_option
@api_options
def keys_list_cmd(
    tenant: str | None, limit: int | None, cursor: str | None, as_json: bool, api: Connection
) -> None:
    """List a tenant's keys (or instance keys): names and prefixes, never the keys.

    \b
    Example:
      dagflow keys list --tenant acme
    """
    page = call(
        api, lambda client: client.instance.list_keys(tenant=tenant, limit=limit, cursor=cursor)
    )
    echo_page(
        page,
        as_json,
        ["ID", "NAME", "PREFIX", "TENANT", "CREATED", "REVOKED"],
        _key_row,
        empty="no keys",
    )


def _key_row(key: Key) -> list[str]:
    return [
        key.id,
        key.name,
        key.prefix,
        key.tenant or "(instance)",
        when(key.created_at),
        when(key.revoked_at) if key.revoked_at else "",
    ]


@keys_group.command("revoke")
@click.argument("key_id", metavar="KEY_ID")
@tenant_option
@json_option
@api_options
def keys_revoke_cmd(key_id: str, tenant: str | None, as_json: bool, api: Connection) -> None:
    """Revoke a key at once: requests with it answer 401 from then on.

    KEY_ID is the id `dagflow keys list` shows (not the key).

    \b
    Example:
      dagflow keys revoke 3f2a9c --tenant acme
    """
    key = call(api, lambda client: client.instance.revoke_key(key_id, tenant=tenant))
    if as_json:
        echo_model(key)
    else:
        click.echo(f"key {key.id} '{key.name}' revoked at {when(key.revoked_at)}")


COMMANDS = [tenants_group, keys_group]
