"""The OpenAPI 3.1 document, written from the route table (the same routes the app serves)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from starter.errors import PROBLEM_JSON, ProblemDetails
from starter.routes.table import PATH_PARAMS, RawInput, Route
from workflows.definition import definition_json_schema

REF = "#/components/schemas/{model}"
Refs = dict[tuple[type[Any], JsonSchemaMode], Any]
"""The ``$ref`` of each (model, mode)."""
TITLE = "dagflow starter"


def openapi(routes: Iterable[Route[Any, Any]], version: str = "0.1.0") -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``.

    Args:
        routes: The route table.
        version: The API's version, for ``info.version``.
    """
    routes = list(routes)
    refs, schemas = _schemas(routes)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": version,
            "description": "Tenants, API keys and versioned definitions of dagflow. Errors are "
            "application/problem+json (RFC 9457) with every field problem in `errors`.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A tenant or instance key: dfk_<prefix>_<secret>.",
                }
            },
        },
    }


def _schemas(routes: list[Route[Any, Any]]) -> tuple[Refs, dict[str, Any]]:
    """A ``$ref`` for each model of the routes, and every schema under components."""
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {
        (ProblemDetails, "serialization"): None
    }
    for route in routes:
        if not route.media_types:
            wanted[(route.output, "serialization")] = None
        body = _model(route.input)
        if body is not None and route.reads_body:
            wanted[(body, "validation")] = None
    refs, top = models_json_schema(list(wanted), ref_template=REF)
    schemas = dict(top.get("$defs", {}))
    schemas.update(_definition_schemas())
    return dict(refs), schemas


def _definition_schemas() -> dict[str, Any]:
    """The definition language's JSON Schema, its ``$defs`` moved under components."""
    schema = definition_json_schema()
    schema.pop("$schema", None)
    text = json.dumps(schema).replace('"#/$defs/', '"#/components/schemas/')
    moved: dict[str, Any] = json.loads(text)
    defs = moved.pop("$defs", {})
    return {**defs, "Definition": moved}


def _operation(route: Route[Any, Any], refs: Refs) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "security": [] if route.access == "public" else [{"apiKey": []}],
    }
    model = _model(route.input)
    parameters = [_path_parameter(name) for name in route.path_params()]
    if model is not None and not route.reads_body:
        parameters += _query_parameters(model)
    parameters += [
        {
            "name": name,
            "in": "header",
            "required": False,
            "description": header.description,
            "schema": header.schema(),
        }
        for name, header in route.headers
    ]
    if parameters:
        operation["parameters"] = parameters
    if isinstance(route.input, type) and issubclass(route.input, RawInput):
        operation["requestBody"] = route.input.openapi_body()
    elif model is not None and route.reads_body:
        schema = refs[(model, "validation")]
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    if route.media_types:
        text = {"type": "string", "description": _description(route.output)}
        content = {media_type: {"schema": text} for media_type in route.media_types}
    else:
        content = {"application/json": {"schema": refs[(route.output, "serialization")]}}
    operation["responses"] = {
        str(route.status): {"description": HTTPStatus(route.status).phrase, "content": content},
        **{
            str(status): _problem(status, refs, dict(route.errors).get(status))
            for status in _error_statuses(route)
        },
    }
    return operation


def _description(model: Any) -> str:
    return " ".join((getattr(model, "__doc__", None) or "").split())


def _error_statuses(route: Route[Any, Any]) -> list[int]:
    statuses = [400] if route.input is not None or route.path_params() else []
    if route.access != "public":
        statuses += [401, 403, 429]
    if route.path_params():
        statuses.append(404)
    if route.reads_body:
        statuses += [409, 413, 415, 422]
    return sorted({*statuses, *(status for status, _ in route.errors), 500, 503})


def _problem(status: int, refs: Refs, description: str | None = None) -> Any:
    return {
        "description": description or HTTPStatus(status).phrase,
        "content": {PROBLEM_JSON: {"schema": refs[(ProblemDetails, "serialization")]}},
    }


def _path_parameter(name: str) -> dict[str, Any]:
    param = PATH_PARAMS[name]
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": param.description,
        "schema": param.schema(),
    }


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    properties = model.model_json_schema()["properties"]
    return [
        {
            "name": field.alias or name,
            "in": "query",
            "required": field.is_required(),
            **({"description": field.description} if field.description else {}),
            "schema": {k: v for k, v in properties[field.alias or name].items() if k != "title"},
        }
        for name, field in model.model_fields.items()
    ]


def _model(kind: Any) -> type[BaseModel] | None:
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None
