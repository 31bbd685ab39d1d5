"""Bindings of command types to definitions.

Tenants call these under ``/v1`` for their own bindings (and read the instance's); instance
keys call the same handlers under ``/v1/instance`` for instance bindings, which run first
for every tenant's commands and which tenants cannot remove.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from pydantic import Field

from starter.api.bindings import BindingUpdate
from starter.api.commands import Binding, BindingCreate, CommandType
from starter.api.common import Page
from starter.db.models import Binding as BindingRow
from starter.errors import FieldError, Invalid, NotFound
from starter.repos import bindings as repo
from starter.repos import definitions as definition_repo
from starter.routes.pagination import PageQuery, decode_cursor, one_page
from starter.routes.table import Access, Call, Route


class BindingQuery(PageQuery):
    """Filters of the binding list."""

    type: CommandType | None = Field(None, description="Only bindings of this command type.")
    scope: Literal["tenant", "instance", "all"] = Field(
        "all", description="A tenant's own bindings, the instance's, or both."
    )


async def create_binding(call: Call[BindingCreate]) -> Binding:
    """Bind a command type to a definition (422 if the caller cannot run it; 409 if bound)."""
    body = call.input
    await _runnable_definition(call, body.definition, body.version)
    row = await repo.create_binding(
        call.session,
        call.owner,
        body.type,
        body.definition,
        version=body.version,
        position=body.position,
    )
    return binding_model(row)


async def list_bindings(call: Call[BindingQuery]) -> Page[Binding]:
    """Bindings the caller reads, by type and then in the order commands start them."""
    query = call.input
    after = decode_cursor(query.cursor, str, int, int, int)
    rows = await repo.list_bindings(
        call.session,
        call.owner,
        scope=query.scope,
        limit=query.limit + 1,
        after=(after[0], after[1], after[2], after[3]) if after else None,
        command_type=query.type,
    )
    page, cursor = one_page(rows, query.limit, repo.sort_key)
    return Page[Binding](items=[binding_model(row) for row in page], next_cursor=cursor)


async def get_binding(call: Call[None]) -> Binding:
    """One binding (a tenant reads its own and the instance's)."""
    return binding_model(await repo.readable(call.session, call.owner, call.path_int("binding_id")))


async def update_binding(call: Call[BindingUpdate]) -> Binding:
    """Change a binding's pinned version or position (403 for a tenant naming an instance
    binding; 422 if the scope cannot run the version)."""
    binding_id = call.path_int("binding_id")
    row = await repo.readable(call.session, call.owner, binding_id)
    changes = call.input.model_dump(include=call.input.model_fields_set)
    if changes.get("version") is not None and row.tenant_id == call.owner:
        await _runnable_definition(call, row.definition_name, changes["version"])
    row = await repo.update_binding(call.session, call.owner, binding_id, changes)
    return binding_model(row)


async def delete_binding(call: Call[None]) -> Binding:
    """Remove a binding (403 for a tenant naming an instance binding)."""
    row = await repo.delete_binding(call.session, call.owner, call.path_int("binding_id"))
    return binding_model(row)


def binding_routes(prefix: str, access: Access) -> list[Route[Any, Any]]:
    """The binding routes under ``prefix`` for tenant or instance keys."""
    base = f"{prefix}/bindings"
    one = f"{base}/{{binding_id}}"
    routes: list[Route[Any, Any]] = [
        Route("POST", base, create_binding, Binding, BindingCreate, status=201),
        Route("GET", base, list_bindings, Page[Binding], BindingQuery),
        Route("GET", one, get_binding, Binding),
        Route("PATCH", one, update_binding, Binding, BindingUpdate),
        Route("DELETE", one, delete_binding, Binding),
    ]
    return [replace(route, access=access, tag="commands") for route in routes]


def binding_model(row: BindingRow) -> Binding:
    """The API model of a binding row."""
    return Binding(
        id=row.id,
        scope="instance" if row.tenant_id is None else "tenant",
        type=row.command_type,
        definition=row.definition_name,
        version=row.version,
        position=row.position,
        created_at=row.created_at,
    )


async def _runnable_definition(call: Call[Any], name: str, version: int | None) -> None:
    """Check that the caller's scope can run the definition a new binding names.

    Raises:
        Invalid: At ``definition`` or ``version``, saying why not.
    """
    try:
        row = await definition_repo.readable(call.session, call.owner, name)
    except NotFound:
        scope = "the instance" if call.owner is None else "this tenant"
        message = f"no definition {name!r} that {scope} can run"
        raise Invalid(message, errors=[FieldError(path="definition", message=message)]) from None
    if row.is_template:
        message = f"{name!r} is a template; bind the definition that instantiating it makes"
        raise Invalid(message, errors=[FieldError(path="definition", message=message)])
    if version is not None:
        try:
            await definition_repo.get_version(call.session, row, version)
        except NotFound as error:
            message = str(error)
            raise Invalid(message, errors=[FieldError(path="version", message=message)]) from None
