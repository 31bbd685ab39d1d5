"""A definition as a request body: JSON, or YAML with ``Content-Type: application/yaml``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from aiohttp import web

from starter import keys
from starter.errors import BadRequest, UnsupportedMediaType
from starter.templates import template_problems
from workflows.definition import Definition
from workflows.loading import DefinitionSyntaxError, Syntax, load_definition
from workflows.validation import Problem, validate_definition

SYNTAX_OF_TYPE: dict[str, Syntax | None] = {
    "application/json": "json",
    "application/yaml": "yaml",
    "application/x-yaml": "yaml",
    "text/yaml": "yaml",
    "text/x-yaml": "yaml",
    "text/plain": None,
    "application/octet-stream": None,
}
"""Content types a definition may come in; None lets the text decide (JSON or YAML)."""


@dataclass(frozen=True)
class DefinitionDocument:
    """A definition as sent, with every problem: syntax, validation and template checks."""

    data: Any
    definition: Definition | None
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        """Whether the definition is valid."""
        return self.definition is not None and not self.problems

    @classmethod
    def check(cls, data: Any, request: web.Request, loaded: list[Problem] | None = None) -> Self:
        """Validate loaded data with the step kinds the service knows."""
        result = validate_definition(data, request.app[keys.KINDS])
        problems = [*(loaded or []), *result.problems, *template_problems(data)]
        return cls(data, None if problems else result.definition, problems)

    @classmethod
    async def from_request(cls, request: web.Request) -> Self:
        """Read the body as JSON or YAML and check it (problems are kept, not raised).

        Raises:
            UnsupportedMediaType: If the content type is not JSON or YAML.
            BadRequest: If the body is not UTF-8.
        """
        content_type = request.content_type
        if content_type not in SYNTAX_OF_TYPE and not content_type.endswith("+json"):
            raise UnsupportedMediaType(
                f"send a definition as application/json or application/yaml, not {content_type}"
            )
        try:
            text = (await request.read()).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the body is not UTF-8 text") from None
        syntax = SYNTAX_OF_TYPE.get(content_type, "json")
        try:
            loaded = load_definition(text, syntax=syntax)
        except DefinitionSyntaxError as error:
            return cls(None, None, [error.problem])
        return cls.check(loaded.data, request, loaded.problems)

    @classmethod
    def openapi_body(cls) -> dict[str, Any]:
        """The request body in OpenAPI: the definition's JSON Schema, as JSON or YAML."""
        ref = {"$ref": "#/components/schemas/Definition"}
        return {
            "required": True,
            "description": "A definition (see `dagflow schema`), as JSON or YAML.",
            "content": {
                "application/json": {"schema": ref},
                "application/yaml": {"schema": {"type": "string"}},
            },
        }
