"""Reading a step's inputs inside an activity: its ``with``, its secret, its URL."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.exceptions import ApplicationError
from yarl import URL

from activities import errors
from activities.client import is_web_url
from activities.secrets import SecretNotFoundError, SecretStore
from workflows.definition import EXPR_PATTERN
from workflows.types import StepInput

Model = TypeVar("Model", bound=BaseModel)

_EXPR = re.compile(EXPR_PATTERN)


def parse_with(model: type[Model], step: StepInput) -> Model:
    """Validate ``step.with_`` against the kind's model.

    Raises:
        ApplicationError: Non-retryable ``BadStepInput`` naming each bad field, also when a
            field still holds a ``${{ }}`` expression that should have been evaluated.
    """
    try:
        parsed = model.model_validate(step.with_)
    except ValidationError as exc:
        raise _invalid(exc) from None
    for name, value in parsed:
        if isinstance(value, str) and _EXPR.match(value):
            field = model.model_fields[name].alias or name
            raise errors.bad_step_input(field, "holds an expression that was not evaluated")
    return parsed


def _invalid(exc: ValidationError) -> ApplicationError:
    """One reason per field (a union's alternatives would repeat the field)."""
    reasons: dict[str, str] = {}
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        reasons.setdefault(field, error["msg"])
    return errors.bad_step_inputs(reasons)


def ok_statuses(value: object) -> frozenset[int] | None:
    """``with.ok_status`` (a status or a list) as a set, or None for the default (any 2xx).

    Raises:
        ApplicationError: Non-retryable ``BadStepInput``.
    """
    if value is None:
        return None
    statuses = value if isinstance(value, list) else [value]
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in statuses):
        raise errors.bad_step_input("ok_status", "must be a status code or a list of them")
    return frozenset(statuses)


def mapping(value: object, field: str) -> dict[str, Any]:
    """A field that must be a mapping (``headers``, ``query``).

    Raises:
        ApplicationError: Non-retryable ``BadStepInput``.
    """
    if not isinstance(value, dict):
        raise errors.bad_step_input(field, "must be a mapping")
    return value


def web_url(value: str) -> URL:
    """The step's ``url`` as an absolute http(s) URL.

    Raises:
        ApplicationError: Non-retryable ``BadStepInput``.
    """
    try:
        url = URL(value)
    except ValueError as exc:
        raise errors.bad_step_input("url", f"not a valid URL: {exc}") from None
    if not is_web_url(url):
        raise errors.bad_step_input("url", f"{value!r} is not an absolute http(s) URL")
    return url


def resolve_secret(store: SecretStore, tenant: str, name: str) -> str:
    """The value of the secret a step names.

    Raises:
        ApplicationError: Non-retryable ``SecretNotFound`` naming the secret.
    """
    try:
        return store.get(tenant, name)
    except SecretNotFoundError:
        raise errors.secret_not_found(name, tenant) from None
