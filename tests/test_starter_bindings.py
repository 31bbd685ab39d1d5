"""Changing bindings: a scope changes its own bindings' version and position, never the
instance's from a tenant key."""

from __future__ import annotations

import pytest

from starter.errors import Forbidden, Invalid, NotFound
from tests.starter import Starter

ORDER_CREATED = "order.created"


def noop(name: str) -> dict[str, object]:
    """A definition of one transform step."""
    return {"name": name, "steps": {"a": {"uses": "transform", "with": {"value": 1}}}}


async def test_a_tenant_changes_its_bindings_version_and_position(starter: Starter) -> None:
    acme = await starter.tenant()
    await acme.definitions.create(noop("ship"))
    await acme.definitions.update("ship", {**noop("ship"), "description": "v2"})
    await acme.definitions.create(noop("bill"))
    ship = await acme.bindings.create(ORDER_CREATED, "ship")
    bill = await acme.bindings.create(ORDER_CREATED, "bill")
    assert [b.id for b in (await acme.bindings.list()).items] == [ship.id, bill.id]

    pinned = await acme.bindings.update(ship.id, version=1)
    assert (pinned.version, pinned.position) == (1, ship.position)
    moved = await acme.bindings.update(ship.id, position=bill.position + 1)
    assert (moved.version, moved.position) == (1, bill.position + 1)  # version kept
    assert [b.id for b in (await acme.bindings.list()).items] == [bill.id, ship.id]
    unpinned = await acme.bindings.update(ship.id, version=None)
    assert unpinned.version is None
    assert await acme.bindings.get(ship.id) == unpinned


async def test_a_binding_update_is_checked(starter: Starter) -> None:
    acme = await starter.tenant()
    await acme.definitions.create(noop("ship"))
    ship = await acme.bindings.create(ORDER_CREATED, "ship")
    with pytest.raises(Invalid) as missing:
        await acme.bindings.update(ship.id, version=9)
    assert [e.path for e in missing.value.problem.errors] == ["version"]
    with pytest.raises(Invalid) as null:
        await acme.bindings.update(ship.id, position=None)
    assert [e.path for e in null.value.problem.errors] == ["position"]
    with pytest.raises(Invalid) as negative:
        await acme.bindings.update(ship.id, position=-1)
    assert [e.path for e in negative.value.problem.errors] == ["position"]
    with pytest.raises(NotFound):
        await acme.bindings.update(ship.id + 1000, position=1)
    assert await acme.bindings.get(ship.id) == ship  # nothing changed


async def test_only_the_instance_changes_instance_bindings(starter: Starter) -> None:
    admin = starter.instance()
    await admin.instance.definitions.create(noop("audit"))
    audit = await admin.instance.bindings.create(ORDER_CREATED, "audit")
    acme = await starter.tenant()
    with pytest.raises(Forbidden) as denied:
        await acme.bindings.update(audit.id, position=5)
    assert "instance" in (denied.value.problem.detail or "")
    assert await acme.bindings.get(audit.id) == audit
    moved = await admin.instance.bindings.update(audit.id, position=5)
    assert moved.position == 5

    other = await starter.tenant()
    await other.definitions.create(noop("ship"))
    theirs = await other.bindings.create(ORDER_CREATED, "ship")
    with pytest.raises(NotFound):  # another tenant's binding is not found
        await acme.bindings.update(theirs.id, position=1)
