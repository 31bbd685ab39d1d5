"""The route table's machinery: a :class:`Route` says everything about one operation, and the
same list of routes registers the aiohttp handlers (:func:`add_routes`) and writes the OpenAPI
document (:mod:`starter.openapi`), so the two cannot drift apart.

A handler takes a :class:`Call` and returns the route's output model::

    async def get_tenant(call: Call[None]) -> Tenant: ...

The adapter around it reads and checks the input (the JSON body of POST/PUT, the query of
GET/DELETE) into the route's input model, opens the request's one transaction, and writes the
output as JSON. Authentication and rate limits happen before, in :mod:`starter.middleware`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, Protocol, Self, TypeVar, runtime_checkable

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from starter import keys
from starter.api.commands import COMMAND_ID_PATTERN
from starter.api.runs import RUN_KEY_PATTERN
from starter.api.tenants import TENANT_ID_PATTERN
from starter.auth import Principal
from starter.errors import BadRequest, FieldError, Invalid, UnsupportedMediaType
from workflows.definition import NAME_PATTERN, STEP_ID_PATTERN
from workflows.validation import join_path

In = TypeVar("In")
"""The input of a route (its body or query model)."""
Out = TypeVar("Out")
"""The output of a route (its answer's model)."""

Access = Literal["public", "tenant", "instance", "any"]
"""Who may call a route: anyone, tenant keys only, instance keys only, or any key."""
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
JSON_TYPES = ("application/json", "application/problem+json")


@runtime_checkable
class RawInput(Protocol):
    """An input type that reads the request itself (e.g. a definition sent as YAML)."""

    @classmethod
    async def from_request(cls, request: web.Request) -> Self:
        """Read the input from the request."""
        ...

    @classmethod
    def openapi_body(cls) -> dict[str, Any]:
        """The OpenAPI ``requestBody`` object."""
        ...


@dataclass(frozen=True)
class PathParam:
    """A path parameter every route names the same way, checked before the handler runs."""

    pattern: str
    description: str
    integer: bool = False

    def schema(self) -> dict[str, Any]:
        """Its JSON Schema for OpenAPI."""
        if self.integer:
            return {"type": "integer", "minimum": 1}
        return {"type": "string", "pattern": self.pattern}


PATH_PARAMS: dict[str, PathParam] = {
    "tenant": PathParam(TENANT_ID_PATTERN, "A tenant id."),
    "key_id": PathParam(r"^[0-9a-f]{32}$", "An API key's id."),
    "name": PathParam(NAME_PATTERN, "A definition's name."),
    "version": PathParam(r"^[1-9][0-9]{0,8}$", "A version number (from 1).", integer=True),
    "definition": PathParam(NAME_PATTERN, "The name of the definition a run runs."),
    "key": PathParam(RUN_KEY_PATTERN, "A run key (the last part of the workflow id)."),
    "step": PathParam(STEP_ID_PATTERN, "A step id."),
    "binding_id": PathParam(r"^[1-9][0-9]{0,8}$", "A binding's id.", integer=True),
    "rule_id": PathParam(r"^[1-9][0-9]{0,8}$", "An alert rule's id.", integer=True),
    "command_id": PathParam(COMMAND_ID_PATTERN, "A command id (unique per tenant)."),
}
"""Every path parameter of every route, by name (a test checks that none is missing)."""


@dataclass
class Call(Generic[In]):
    """One call of a handler: the request, its checked input, and its transaction.

    The transaction begins when a handler first uses :attr:`session` (a handler that needs no
    database, or manages its own units of work, costs none), and the adapter commits it after
    the handler returns, or rolls it back if the handler raises.
    """

    request: web.Request
    input: In
    sessions: async_sessionmaker[AsyncSession] | None = None
    _session: AsyncSession | None = None

    @property
    def session(self) -> AsyncSession:
        """The request's session, inside its one transaction."""
        if self._session is None:
            assert self.sessions is not None, "public routes have no transaction"
            self._session = self.sessions()
        return self._session

    @property
    def principal(self) -> Principal:
        """Who is calling (authenticated routes only)."""
        return self.request[keys.PRINCIPAL]

    @property
    def owner(self) -> str | None:
        """The caller's tenant, or None for an instance key: the owner of what it writes."""
        return self.principal.tenant_id

    def path(self, name: str) -> str:
        """A path parameter, checked against :data:`PATH_PARAMS`.

        Raises:
            BadRequest: If it does not match, naming it.
        """
        value = self.request.match_info[name]
        param = PATH_PARAMS[name]
        if not re.match(param.pattern, value):
            message = f"bad {name} {value!r}: must match {param.pattern.strip('^$')}"
            raise BadRequest(message, errors=[FieldError(path=f"path.{name}", message=message)])
        return value

    def path_int(self, name: str) -> int:
        """An integer path parameter."""
        return int(self.path(name))


Handler = Callable[[Call[In]], Awaitable[Out]]


@dataclass(frozen=True)
class Route(Generic[In, Out]):
    """One operation of the API; its summary is the first line of the handler's docstring.

    Attributes:
        method: The HTTP method.
        path: The path, with ``{param}`` parts named in :data:`PATH_PARAMS`.
        handler: Takes a :class:`Call` of the input, returns the output (or a ready
            ``web.Response`` for answers with their own status or headers).
        output: The model of the answer's JSON body.
        input: The model of the JSON body (POST/PUT) or the query (GET/DELETE), or a
            :class:`RawInput` type; None when there is none.
        status: The status of a successful answer.
        access: Who may call it.
        tag: The OpenAPI tag that groups it.
        headers: Request headers the handler reads (optional ones), by name, for OpenAPI.
        errors: Error answers the route gives, by status, with what each means, for OpenAPI
            (on top of those every route of its kind may give).
        media_types: The media types of a successful answer; a JSON answer when empty, else
            text of those types (the handler returns a ready ``web.Response``).
        session_cookie: Whether a codec session cookie may stand in for the bearer key (the
            codec server's routes, for the Web UI; see :mod:`starter.routes.codec`).
    """

    method: str
    path: str
    handler: Handler[In, Out]
    output: type[Out]
    input: type[In] | None = None
    status: int = 200
    access: Access = "tenant"
    tag: str = "definitions"
    headers: tuple[tuple[str, PathParam], ...] = ()
    errors: tuple[tuple[int, str], ...] = ()
    media_types: tuple[str, ...] = ()
    session_cookie: bool = False

    TRANSACTIONAL: ClassVar[frozenset[Access]] = frozenset({"tenant", "instance"})

    @property
    def operation_id(self) -> str:
        """A unique name: the aiohttp route name and the OpenAPI operationId."""
        return f"{self.access}_{self.handler.__name__}"

    @property
    def summary(self) -> str:
        """The first line of the handler's docstring."""
        return (self.handler.__doc__ or self.handler.__name__).strip().splitlines()[0]

    @property
    def reads_body(self) -> bool:
        """Whether the input comes from the body (else from the query)."""
        return self.method in BODY_METHODS

    def path_params(self) -> list[str]:
        """The names of the path's ``{param}`` parts, in order."""
        return re.findall(r"\{(\w+)\}", self.path)


def add_routes(app: web.Application, routes: list[Route[Any, Any]]) -> None:
    """Register every route on the app, and remember them by name for the middleware."""
    by_name: dict[str, Route[Any, Any]] = {}
    for route in routes:
        app.router.add_route(route.method, route.path, _adapt(route), name=route.operation_id)
        by_name[route.operation_id] = route
    app[keys.ROUTES] = by_name


def route_of(request: web.Request) -> Route[Any, Any] | None:
    """The route a request was matched to (None for unknown paths)."""
    name = request.match_info.route.name
    return request.app[keys.ROUTES].get(name) if name else None


def json_response(model: BaseModel, status: int = 200, **headers: str) -> web.Response:
    """A JSON answer of a model (field aliases, datetimes in ISO 8601)."""
    return web.Response(
        text=model.model_dump_json(by_alias=True),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _adapt(route: Route[Any, Any]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        value = await _read_input(route, request)
        if route.access in Route.TRANSACTIONAL:
            call = Call(request, value, request.app[keys.SESSIONS])
            try:
                output = await route.handler(call)
                if call._session is not None:
                    await call._session.commit()
            finally:
                if call._session is not None:
                    await call._session.close()  # rolls back what was not committed
        else:
            output = await route.handler(Call(request, value))
        if isinstance(output, web.StreamResponse):
            return output
        return json_response(output, route.status)

    handle.__name__ = route.operation_id
    handle.__doc__ = route.summary
    return handle


async def _read_input(route: Route[Any, Any], request: web.Request) -> Any:
    kind = route.input
    if kind is None:
        return None
    if isinstance(kind, type) and issubclass(kind, RawInput):
        return await kind.from_request(request)
    assert issubclass(kind, BaseModel), f"{route.operation_id}: input must be a model"
    if not route.reads_body:
        return _parse(kind, dict(request.query), "query")
    raw = await request.read()
    if raw and request.content_type not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"send JSON (Content-Type: application/json), not {request.content_type}"
        )
    return _parse_json(kind, raw or b"{}")


def _parse(model: type[BaseModel], data: dict[str, Any], where: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        errors = field_errors(error, where)
        raise BadRequest(f"bad {where} parameters", errors=errors) from None


def _parse_json(model: type[BaseModel], raw: bytes) -> BaseModel:
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        if any(e["type"] == "json_invalid" for e in error.errors()):
            reason = error.errors()[0]["msg"]
            raise BadRequest(f"the body is not valid JSON: {reason}") from None
        raise Invalid(
            "the body does not match the request schema", errors=field_errors(error)
        ) from None


def field_errors(error: ValidationError, prefix: str = "") -> list[FieldError]:
    """One field error per pydantic error, at its dotted path.

    Args:
        error: What pydantic found.
        prefix: Put before every path (``query`` for query parameters); errors of the
            body as a whole have the path ``body``.
    """
    out = []
    for details in error.errors(include_url=False):
        segments = [p for p in details["loc"] if isinstance(p, str | int)]
        path = join_path(prefix, segments) if segments or prefix else "body"
        kind = details["type"]
        if kind == "extra_forbidden":
            message = "unknown field"
        elif kind == "missing":
            message = "required"
        else:
            message = details["msg"][:1].lower() + details["msg"][1:]
        out.append(FieldError(path=path, message=message))
    return out
