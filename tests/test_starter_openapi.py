"""The OpenAPI document describes exactly the routes the app serves, and is valid 3.1."""

from __future__ import annotations

from openapi_spec_validator import validate

from starter.app import create_app
from starter.routes import ROUTES
from starter.routes.table import PATH_PARAMS
from starter.settings import ServiceSettings
from tests.starter import Starter


def served_operations() -> set[tuple[str, str]]:
    app = create_app(ServiceSettings())
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


async def test_every_served_route_is_documented_and_every_documented_route_served(
    starter: Starter,
) -> None:
    document = await starter.client(None).openapi()
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    served = served_operations()
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"
    assert len(served) == len(ROUTES)


async def test_the_document_is_valid_openapi_3_1(starter: Starter) -> None:
    document = await starter.client(None).openapi()
    assert document["openapi"] == "3.1.0"
    validate(document)
    create = document["paths"]["/v1/definitions"]["post"]
    assert create["responses"]["422"]["content"]["application/problem+json"]
    assert "application/yaml" in create["requestBody"]["content"]
    listing = document["paths"]["/v1/definitions"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {
        "limit",
        "cursor",
        "name_prefix",
        "active",
        "template",
        "scope",
    }
    assert document["paths"]["/healthz"]["get"]["security"] == []
    picture = document["paths"]["/v1/runs/{definition}/{key}/graph.svg"]["get"]
    assert set(picture["responses"]["200"]["content"]) == {"image/svg+xml", "text/plain"}
    bindings = document["paths"]["/v1/bindings/{binding_id}"]
    assert {"get", "patch", "delete"} <= set(bindings)


def test_every_path_parameter_is_declared_once() -> None:
    for route in ROUTES:
        for name in route.path_params():
            assert name in PATH_PARAMS, f"{route.method} {route.path}: declare {name!r}"
    assert len({route.operation_id for route in ROUTES}) == len(ROUTES)
