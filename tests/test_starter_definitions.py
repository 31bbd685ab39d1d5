"""Definitions through the service: validation, versions, rollback, scopes and isolation."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from starter.errors import Conflict, Forbidden, Invalid, NotFound
from tests.starter import Starter


def definition(name: str, value: Any = 1, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "steps": {"only": {"uses": "transform", "with": {"value": value}}},
        "output": "${{ steps.only.output }}",
        **extra,
    }


BROKEN = {
    "name": "broken",
    "steps": {
        "fetch": {"uses": "http", "with": {"method": "GET"}},
        "charge": {"uses": "transform", "needs": ["fetch", "nope"], "with": {"value": 1}},
        "loop_a": {"uses": "transform", "needs": ["loop_b"], "with": {"value": 1}},
        "loop_b": {"uses": "transform", "needs": ["loop_a"], "with": {"value": 1}},
    },
    "output": "${{ steps.missing.output }}",
    "timeout": "soon",
}

YAML = """\
name: from-yaml
description: Sent as YAML
steps:
  greet:
    uses: transform
    with: {value: "hello ${{ input.who }}"}
output: ${{ steps.greet.output }}
"""


async def test_create_get_and_versions(starter: Starter) -> None:
    tenant = await starter.tenant()
    before = datetime.now(UTC) - timedelta(seconds=1)
    created = await tenant.definitions.create(definition("greet", description="first"))
    assert created.created and created.scope == "tenant" and created.current_version == 1
    assert created.description == "first"
    assert created.version.author == "tests"
    assert before <= created.version.created_at <= datetime.now(UTC)
    canonical = json.dumps(created.version.content, sort_keys=True, separators=(",", ":"))
    assert created.version.content_hash == hashlib.sha256(canonical.encode()).hexdigest()

    same = await tenant.definitions.update("greet", definition("greet", description="first"))
    assert not same.created and same.current_version == 1

    second = await tenant.definitions.update("greet", definition("greet", 2))
    assert second.created and second.current_version == 2
    assert second.version.content["steps"]["only"]["with"]["value"] == 2

    current = await tenant.definitions.get("greet")
    assert current.current_version == 2 and current.version.content == second.version.content
    versions = await tenant.definitions.versions("greet")
    assert [v.version for v in versions.items] == [2, 1]
    assert versions.items[1].content_hash == created.version.content_hash
    first = await tenant.definitions.version("greet", 1)
    assert first.content == created.version.content
    with pytest.raises(NotFound):
        await tenant.definitions.version("greet", 3)
    with pytest.raises(Conflict):
        await tenant.definitions.create(definition("greet"))


async def test_yaml_bodies_keep_their_document(starter: Starter) -> None:
    tenant = await starter.tenant()
    created = await tenant.definitions.create(YAML)
    assert created.name == "from-yaml" and created.description == "Sent as YAML"
    assert list(created.version.content) == ["name", "description", "steps", "output"]
    assert (await tenant.definitions.get("from-yaml")).version.content == created.version.content


async def test_invalid_definitions_answer_422_with_every_problem(starter: Starter) -> None:
    tenant = await starter.tenant()
    with pytest.raises(Invalid) as error:
        await tenant.definitions.create(BROKEN)
    problem = error.value.problem
    assert problem.status == 422 and problem.type.endswith(":invalid")
    paths = {e.path: e.message for e in error.value.errors}
    assert "steps.fetch.with" in paths  # url is missing
    assert "no step named 'nope'" in paths["steps.charge.needs[1]"]
    assert "cycle" in paths["steps.loop_a.needs[0]"]
    assert "missing" in paths["output"]
    assert "timeout" in paths
    assert (await tenant.definitions.list()).items == []

    with pytest.raises(Invalid) as syntax:
        await tenant.definitions.create("name: [unclosed")
    assert syntax.value.errors[0].path == "definition"


async def test_update_checks_the_name_and_the_definition(starter: Starter) -> None:
    tenant = await starter.tenant()
    await tenant.definitions.create(definition("greet"))
    with pytest.raises(Invalid) as renamed:
        await tenant.definitions.update("greet", definition("other"))
    assert [e.path for e in renamed.value.errors] == ["name"]
    with pytest.raises(Invalid):
        await tenant.definitions.update("greet", {**BROKEN, "name": "greet"})
    with pytest.raises(NotFound):
        await tenant.definitions.update("absent", definition("absent"))
    assert (await tenant.definitions.get("greet")).current_version == 1


async def test_rollback_moves_the_current_version(starter: Starter) -> None:
    tenant = await starter.tenant()
    await tenant.definitions.create(definition("d", 1))
    for value in (2, 3):
        await tenant.definitions.update("d", definition("d", value))
    back = await tenant.definitions.rollback("d", 1)
    assert back.current_version == 1 and back.version.content["steps"]["only"]["with"]["value"] == 1
    assert [v.version for v in (await tenant.definitions.versions("d")).items] == [3, 2, 1]
    with pytest.raises(NotFound):
        await tenant.definitions.rollback("d", 9)
    again = await tenant.definitions.update("d", definition("d", 5))
    assert again.current_version == 4  # versions are never reused


async def test_deactivate_and_activate(starter: Starter) -> None:
    tenant = await starter.tenant()
    await tenant.definitions.create(definition("d"))
    assert not (await tenant.definitions.deactivate("d")).active
    assert [d.name for d in (await tenant.definitions.list(active=False)).items] == ["d"]
    assert (await tenant.definitions.list(active=True)).items == []
    assert (await tenant.definitions.activate("d")).active


async def test_validate_stores_nothing(starter: Starter) -> None:
    tenant = await starter.tenant()
    good = await tenant.definitions.validate(definition("fine"))
    assert good.ok and good.problems == []
    bad = await tenant.definitions.validate(BROKEN)
    assert not bad.ok and "steps.charge.needs[1]" in [p.path for p in bad.problems]
    syntax = await tenant.definitions.validate("{not json")
    assert not syntax.ok and syntax.problems[0].path == "definition"
    assert (await tenant.definitions.list()).items == []
    assert await starter.sql("SELECT * FROM definitions") == []


async def test_list_paginates_and_filters(starter: Starter) -> None:
    tenant = await starter.tenant()
    names = [f"flow-{i:02}" for i in range(7)] + ["other-a", "other_b"]
    for name in names:
        await tenant.definitions.create(definition(name))
    await tenant.definitions.deactivate("flow-03")

    first = await tenant.definitions.list(limit=4)
    assert [d.name for d in first.items] == names[:4] and first.next_cursor
    everything = [d.name async for d in tenant.definitions.iterate(limit=2)]
    assert everything == names

    flows = [d.name async for d in tenant.definitions.iterate(name_prefix="flow-", limit=3)]
    assert flows == names[:7]
    assert [d.name for d in (await tenant.definitions.list(name_prefix="other_")).items] == [
        "other_b"
    ]  # "_" is a literal, not a LIKE wildcard
    inactive = await tenant.definitions.list(active=False)
    assert [d.name for d in inactive.items] == ["flow-03"]


async def test_tenants_never_see_each_others_definitions(starter: Starter) -> None:
    a = await starter.tenant("tenant-a")
    b = await starter.tenant("tenant-b")
    await a.definitions.create(definition("secret-flow"))
    await a.definitions.update("secret-flow", definition("secret-flow", 2))
    await b.definitions.create(definition("b-flow"))

    for attempt in (
        b.definitions.get("secret-flow"),
        b.definitions.versions("secret-flow"),
        b.definitions.version("secret-flow", 1),
        b.definitions.rollback("secret-flow", 1),
        b.definitions.deactivate("secret-flow"),
        b.definitions.update("secret-flow", definition("secret-flow", 9)),
    ):
        with pytest.raises(NotFound):
            await attempt

    assert [d.name for d in (await a.definitions.list()).items] == ["secret-flow"]
    assert [d.name for d in (await b.definitions.list()).items] == ["b-flow"]
    # B may use the same name: names are per tenant
    await b.definitions.create(definition("secret-flow", 42))
    own = await a.definitions.get("secret-flow")
    assert own.current_version == 2 and own.version.content["steps"]["only"]["with"]["value"] == 2


async def test_instance_definitions_are_shared_and_read_only_for_tenants(
    starter: Starter,
) -> None:
    admin = starter.instance()
    tenant = await starter.tenant()
    shared = await admin.instance.definitions.create(definition("shared-flow"))
    assert shared.scope == "instance"
    await tenant.definitions.create(definition("own-flow"))

    seen = await tenant.definitions.get("shared-flow")
    assert seen.scope == "instance" and seen.version.author == "instance (bootstrap)"
    assert [v.version for v in (await tenant.definitions.versions("shared-flow")).items] == [1]

    async def names(scope: str) -> list[tuple[str, str]]:
        return [(d.name, d.scope) async for d in tenant.definitions.iterate(scope=scope)]

    assert await names("all") == [("own-flow", "tenant"), ("shared-flow", "instance")]
    assert await names("tenant") == [("own-flow", "tenant")]
    assert await names("instance") == [("shared-flow", "instance")]
    assert [d.name for d in (await admin.instance.definitions.list()).items] == ["shared-flow"]

    for attempt in (
        tenant.definitions.update("shared-flow", definition("shared-flow", 2)),
        tenant.definitions.rollback("shared-flow", 1),
        tenant.definitions.deactivate("shared-flow"),
    ):
        with pytest.raises(Forbidden):
            await attempt

    updated = await admin.instance.definitions.update("shared-flow", definition("shared-flow", 2))
    assert updated.current_version == 2
    assert (await tenant.definitions.get("shared-flow")).current_version == 2


async def test_a_tenant_definition_shadows_an_instance_one_of_the_same_name(
    starter: Starter,
) -> None:
    admin = starter.instance()
    tenant = await starter.tenant()
    await admin.instance.definitions.create(definition("common", 1))
    await tenant.definitions.create(definition("common", 2))
    mine = await tenant.definitions.get("common")
    assert mine.scope == "tenant" and mine.version.content["steps"]["only"]["with"]["value"] == 2
    everything = [(d.name, d.scope) async for d in tenant.definitions.iterate()]
    assert sorted(everything) == [("common", "instance"), ("common", "tenant")]
