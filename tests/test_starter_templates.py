"""Templates: definitions with typed params, rendered into new definitions."""

from __future__ import annotations

from typing import Any

import pytest

from starter.errors import Conflict, Invalid, NotFound
from starter.templates import TemplateError, param_values, render_template, template_problems
from tests.starter import Starter
from workflows.definition import Definition
from workflows.validation import validate_definition

NOTIFY: dict[str, Any] = {
    "name": "notify",
    "description": "Tell ${{ params.team }} about an order",
    "params": {
        "team": {"type": "string"},
        "url": {"type": "string", "default": "https://hooks.example/notify"},
        "retries": {"type": "integer", "default": 3},
        "extra": {"type": "object", "default": None},
    },
    "input": {"type": "object", "properties": {"order": {"type": "string"}}},
    "steps": {
        "post": {
            "uses": "http",
            "with": {
                "method": "POST",
                "url": "${{ params.url }}",
                "json": {
                    "team": "${{ params.team }}",
                    "text": "order ${{ input.order }} for ${{ params.team }}",
                    "retries": "${{ params.retries }}",
                    "extra": "${{ params.extra }}",
                },
            },
        }
    },
    "output": "${{ steps.post.output.status }}",
}


def test_a_template_is_a_valid_definition_with_params() -> None:
    result = validate_definition(NOTIFY)
    assert result.ok and result.definition is not None
    params = result.definition.params or {}
    assert params["team"].required and not params["url"].required
    assert template_problems(NOTIFY) == []


def test_param_defaults_must_have_the_param_type() -> None:
    bad = {**NOTIFY, "params": {"retries": {"type": "integer", "default": "three"}}}
    problems = validate_definition(bad).problems
    assert [(p.path, p.message) for p in problems] == [
        ("params.retries", "default must be of type integer, got 'three'")
    ]


def test_params_expressions_are_checked() -> None:
    steps = {
        "a": {
            "uses": "transform",
            "with": {"value": "${{ params.tem }}", "mixed": "${{ params.team + input.x }}"},
        }
    }
    template = {"name": "t", "params": {"team": {}}, "steps": steps}
    messages = [(p.path, p.message) for p in template_problems(template)]
    assert ("steps.a.with.value", "no param named 'tem' (did you mean 'team'?)") in messages
    assert any(
        path == "steps.a.with.mixed" and "nothing else" in message for path, message in messages
    )
    plain = {
        "name": "p",
        "steps": {"a": {"uses": "transform", "with": {"value": "${{ params.x }}"}}},
    }
    assert [p.path for p in template_problems(plain)] == ["steps.a.with.value"]


def test_rendering_replaces_only_params_expressions() -> None:
    params = Definition.model_validate(NOTIFY).params or {}
    values = param_values(params, {"team": "billing"})
    assert values == {
        "team": "billing",
        "url": "https://hooks.example/notify",
        "retries": 3,
        "extra": None,
    }
    data = render_template(NOTIFY, "notify-billing", values)
    assert data["name"] == "notify-billing" and "params" not in data
    sent = data["steps"]["post"]["with"]
    assert sent["url"] == "https://hooks.example/notify"
    assert sent["json"] == {
        "team": "billing",
        "text": "order ${{ input.order }} for billing",
        "retries": 3,
        "extra": None,
    }
    assert data["description"] == "Tell billing about an order"
    assert data["output"] == "${{ steps.post.output.status }}"
    assert validate_definition(data).ok


def test_param_values_name_every_bad_param() -> None:
    params = Definition.model_validate(NOTIFY).params or {}
    with pytest.raises(TemplateError) as error:
        param_values(params, {"retries": "3", "teem": "x"})
    assert [(p.path, p.message) for p in error.value.problems] == [
        ("params.teem", "unknown param (did you mean 'team'?)"),
        ("params.team", "missing required param of type string"),
        ("params.retries", 'expected integer, got "3"'),
    ]
    with pytest.raises(TemplateError):
        param_values(params, {"team": "x", "retries": True})  # a boolean is no integer


async def test_instantiate_through_the_service(starter: Starter) -> None:
    tenant = await starter.tenant()
    stored = await tenant.definitions.create(NOTIFY)
    assert stored.is_template
    assert [d.name for d in (await tenant.definitions.list(template=True)).items] == ["notify"]

    made = await tenant.definitions.instantiate("notify", "notify-ops", {"team": "ops"})
    assert made.name == "notify-ops" and made.current_version == 1 and not made.is_template
    assert made.version.content["steps"]["post"]["with"]["json"]["retries"] == 3
    assert made.description == "Tell ops about an order"

    with pytest.raises(Invalid) as error:
        await tenant.definitions.instantiate("notify", "notify-x", {"retries": "many"})
    assert {e.path for e in error.value.errors} == {"params.team", "params.retries"}
    with pytest.raises(Conflict):
        await tenant.definitions.instantiate("notify", "notify-ops", {"team": "again"})
    with pytest.raises(NotFound):
        await tenant.definitions.instantiate("notify-ops", "copy", {})
    with pytest.raises(Invalid) as bad_name:
        await tenant.definitions.instantiate("notify", "Bad Name", {"team": "x"})
    assert [e.path for e in bad_name.value.errors] == ["name"]


async def test_instance_templates_instantiate_into_tenant_definitions(starter: Starter) -> None:
    admin = starter.instance()
    tenant = await starter.tenant()
    other = await starter.tenant()
    await admin.instance.definitions.create(NOTIFY)
    made = await tenant.definitions.instantiate("notify", "my-notify", {"team": "me"})
    assert made.scope == "tenant"
    with pytest.raises(NotFound):
        await other.definitions.get("my-notify")
    await admin.instance.definitions.deactivate("notify")
    with pytest.raises(Conflict):
        await tenant.definitions.instantiate("notify", "late", {"team": "me"})


async def test_a_template_that_renders_invalid_answers_422(starter: Starter) -> None:
    tenant = await starter.tenant()
    template = {
        "name": "flaky",
        "params": {"kind": {"type": "string", "default": "transform"}},
        "steps": {"a": {"uses": "transform", "with": {"value": "${{ params.kind }}"}}},
        "output": "${{ params.kind == 'x' ? 1 : steps.b.output }}",
    }
    with pytest.raises(Invalid) as error:
        await tenant.definitions.create(template)
    assert "output" in {e.path for e in error.value.errors}
