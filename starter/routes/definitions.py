"""Definitions, their versions, validation and templates.

Tenants call these under ``/v1``; instance keys call the same handlers under ``/v1/instance``
for instance definitions, which every tenant reads but only the instance writes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from pydantic import Field

from starter.api.common import Page
from starter.api.definitions import (
    DefinitionDetail,
    DefinitionSummary,
    Instantiate,
    Rollback,
    Validation,
    Version,
    VersionInfo,
)
from starter.db.models import DefinitionVersion, StoredDefinition
from starter.errors import Conflict, FieldError, Invalid, NotFound
from starter.repos import definitions as repo
from starter.routes.document import DefinitionDocument
from starter.routes.pagination import PageQuery, decode_cursor, one_page
from starter.routes.table import Access, Call, Route
from starter.templates import TemplateError, param_values, render_template
from workflows.definition import Definition


class DefinitionQuery(PageQuery):
    """Filters of the definition list."""

    name_prefix: str | None = Field(None, max_length=64, description="Names starting with this.")
    active: bool | None = Field(None, description="Only active (true) or inactive (false) ones.")
    template: bool | None = Field(None, description="Only templates (true) or no templates.")
    scope: Literal["tenant", "instance", "all"] = Field(
        "all", description="A tenant's own definitions, the instance's, or both."
    )


async def create_definition(call: Call[DefinitionDocument]) -> DefinitionDetail:
    """Store a new definition as version 1 (422 with every problem; 409 if the name exists)."""
    definition = _valid(call.input)
    content = repo.Content.of(call.input.data)
    row, version = await repo.create_definition(
        call.session, call.owner, definition.name, content, _author(call)
    )
    return _detail(row, version, created=True)


async def list_definitions(call: Call[DefinitionQuery]) -> Page[DefinitionSummary]:
    """Definitions the caller reads, by name; filters and cursor pagination."""
    query = call.input
    after = decode_cursor(query.cursor, str, int)
    rows = await repo.list_definitions(
        call.session,
        call.owner,
        scope=query.scope,
        limit=query.limit + 1,
        after=(after[0], after[1]) if after else None,
        name_prefix=query.name_prefix,
        active=query.active,
        templates=query.template,
    )
    page, cursor = one_page(rows, query.limit, lambda row: (row.name, row.id))
    return Page[DefinitionSummary](items=[_summary(row) for row in page], next_cursor=cursor)


async def get_definition(call: Call[None]) -> DefinitionDetail:
    """The current version of a definition, with its content."""
    row = await repo.readable(call.session, call.owner, call.path("name"))
    return _detail(row, await repo.get_version(call.session, row, row.current_version))


async def update_definition(call: Call[DefinitionDocument]) -> DefinitionDetail:
    """Make the body the current version: a new version, or the same one if unchanged."""
    name = call.path("name")
    definition = _valid(call.input)
    if definition.name != name:
        message = f"the definition is named {definition.name!r}, but the path names {name!r}"
        raise Invalid(message, errors=[FieldError(path="name", message=message)])
    row = await repo.writable(call.session, call.owner, name)
    content = repo.Content.of(call.input.data)
    version, created = await repo.add_version(call.session, row, content, _author(call))
    return _detail(row, version, created=created)


async def list_versions(call: Call[PageQuery]) -> Page[VersionInfo]:
    """Versions of a definition, newest first (without their content)."""
    row = await repo.readable(call.session, call.owner, call.path("name"))
    after = decode_cursor(call.input.cursor, int)
    rows = await repo.list_versions(
        call.session, row, limit=call.input.limit + 1, after=after[0] if after else None
    )
    page, cursor = one_page(rows, call.input.limit, lambda version: (version.version,))
    return Page[VersionInfo](items=[_info(version) for version in page], next_cursor=cursor)


async def get_version(call: Call[None]) -> Version:
    """One version of a definition, with its content."""
    row = await repo.readable(call.session, call.owner, call.path("name"))
    version = await repo.get_version(call.session, row, call.path_int("version"))
    return Version.model_validate(version, from_attributes=True)


async def rollback_definition(call: Call[Rollback]) -> DefinitionDetail:
    """Make an existing version the current one again (no new version is written)."""
    row = await repo.writable(call.session, call.owner, call.path("name"))
    version = await repo.rollback(call.session, row, call.input.version)
    return _detail(row, version)


async def deactivate_definition(call: Call[None]) -> DefinitionDetail:
    """Stop new runs of the definition (its versions stay)."""
    return await _set_active(call, False)


async def activate_definition(call: Call[None]) -> DefinitionDetail:
    """Let runs of a deactivated definition start again."""
    return await _set_active(call, True)


async def validate_definition(call: Call[DefinitionDocument]) -> Validation:
    """Check a definition and report every problem; nothing is stored."""
    problems = [FieldError(path=p.path, message=p.message) for p in call.input.problems]
    return Validation(ok=call.input.ok, problems=problems)


async def instantiate_template(call: Call[Instantiate]) -> DefinitionDetail:
    """Render a template's params into a new definition of the caller's."""
    name = call.path("name")
    row = await repo.readable(call.session, call.owner, name)
    if not row.is_template:
        raise NotFound(f"no template {name!r} ({name!r} is a definition without params)")
    if not row.active:
        raise Conflict(f"template {name!r} is deactivated")
    template = await repo.get_version(call.session, row, row.current_version)
    params = Definition.model_validate(template.content).params or {}
    try:
        values = param_values(params, call.input.params)
        data = render_template(template.content, call.input.name, values)
    except TemplateError as error:
        raise Invalid(f"cannot instantiate template {name!r}", errors=error.problems) from None
    document = DefinitionDocument.check(data, call.request)
    if not document.ok:
        raise Invalid(
            f"template {name!r} renders into an invalid definition", errors=document.problems
        )
    row, version = await repo.create_definition(
        call.session, call.owner, call.input.name, repo.Content.of(data), _author(call)
    )
    return _detail(row, version, created=True)


def definition_routes(prefix: str, access: Access) -> list[Route[Any, Any]]:
    """The definition routes under ``prefix`` for tenant or instance keys."""
    base = f"{prefix}/definitions"
    named = f"{base}/{{name}}"
    templates = f"{prefix}/templates/{{name}}/instantiate"
    routes: list[Route[Any, Any]] = [
        Route("POST", base, create_definition, DefinitionDetail, DefinitionDocument, status=201),
        Route("GET", base, list_definitions, Page[DefinitionSummary], DefinitionQuery),
        Route("POST", f"{base}/validate", validate_definition, Validation, DefinitionDocument),
        Route("GET", named, get_definition, DefinitionDetail),
        Route("PUT", named, update_definition, DefinitionDetail, DefinitionDocument),
        Route("GET", f"{named}/versions", list_versions, Page[VersionInfo], PageQuery),
        Route("GET", f"{named}/versions/{{version}}", get_version, Version),
        Route("POST", f"{named}/rollback", rollback_definition, DefinitionDetail, Rollback),
        Route("POST", f"{named}/deactivate", deactivate_definition, DefinitionDetail),
        Route("POST", f"{named}/activate", activate_definition, DefinitionDetail),
        Route("POST", templates, instantiate_template, DefinitionDetail, Instantiate, status=201,
              tag="templates"),
    ]  # fmt: skip
    return [replace(route, access=access) for route in routes]


async def _set_active(call: Call[None], active: bool) -> DefinitionDetail:
    row = await repo.writable(call.session, call.owner, call.path("name"))
    await repo.set_active(call.session, row, active)
    return _detail(row, await repo.get_version(call.session, row, row.current_version))


def _valid(document: DefinitionDocument) -> Definition:
    if document.definition is None or document.problems:
        count = len(document.problems)
        raise Invalid(
            f"the definition has {count} problem{'s' if count != 1 else ''}",
            errors=document.problems,
        )
    return document.definition


def _author(call: Call[Any]) -> repo.Author:
    principal = call.principal
    return repo.Author(name=principal.key_name, key=principal.key_prefix)


def _summary(row: StoredDefinition) -> DefinitionSummary:
    return DefinitionSummary(
        name=row.name,
        scope="instance" if row.tenant_id is None else "tenant",
        description=row.description,
        current_version=row.current_version,
        active=row.active,
        is_template=row.is_template,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _info(version: DefinitionVersion) -> VersionInfo:
    return VersionInfo.model_validate(version, from_attributes=True)


def _detail(
    row: StoredDefinition, version: DefinitionVersion, *, created: bool = False
) -> DefinitionDetail:
    return DefinitionDetail(
        **_summary(row).model_dump(),
        version=Version.model_validate(version, from_attributes=True),
        created=created,
    )
