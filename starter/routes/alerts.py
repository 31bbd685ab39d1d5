"""Alert rules of the caller's tenant, and the deliveries of their alerts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field

from starter import keys
from starter.api.alerts import AlertDelivery, AlertRule, AlertRuleCreate, AlertRuleUpdate
from starter.api.common import Page
from starter.db.models import AlertDelivery as DeliveryRow
from starter.db.models import AlertRule as RuleRow
from starter.errors import FieldError, Invalid
from starter.repos import alerts as repo
from starter.repos.alerts import alert_secrets
from starter.routes.pagination import PageQuery, decode_cursor, one_page
from starter.routes.table import Call, Route
from workflows.durations import format_duration, parse_duration


class DeliveryQuery(PageQuery):
    """Filters of the delivery list."""

    rule: int | None = Field(None, ge=1, description="Only the alerts of this rule.")


async def create_alert_rule(call: Call[AlertRuleCreate]) -> AlertRule:
    """Add an alert rule (422 naming the field for bad input or an unknown secret)."""
    body = call.input
    problems = [FieldError(path=field, message=message) for field, message in body.kind_errors()]
    if problems:
        raise Invalid(f"a {body.kind} rule: {problems[0].path}: {problems[0].message}",
                      errors=problems)  # fmt: skip
    _check_secret(call, body.secret)
    row = await repo.create_rule(
        call.session,
        call.principal.tenant,
        kind=body.kind,
        url=body.url,
        definition_name=body.definition,
        secret=body.secret,
        threshold=body.threshold,
        window_seconds=_seconds(body.window),
        min_runs=(body.min_runs or 1) if body.kind == "failure_rate" else None,
        enabled=body.enabled,
    )
    return rule_model(row)


async def list_alert_rules(call: Call[PageQuery]) -> Page[AlertRule]:
    """The caller's alert rules, oldest first."""
    after = decode_cursor(call.input.cursor, int)
    rows = await repo.list_rules(
        call.session,
        call.principal.tenant,
        limit=call.input.limit + 1,
        after=after[0] if after else None,
    )
    page, cursor = one_page(rows, call.input.limit, lambda row: (row.id,))
    return Page[AlertRule](items=[rule_model(row) for row in page], next_cursor=cursor)


async def get_alert_rule(call: Call[None]) -> AlertRule:
    """One alert rule."""
    row = await repo.get_rule(call.session, call.principal.tenant, call.path_int("rule_id"))
    return rule_model(row)


async def update_alert_rule(call: Call[AlertRuleUpdate]) -> AlertRule:
    """Change a rule's URL, secret or enabled flag."""
    row = await repo.get_rule(call.session, call.principal.tenant, call.path_int("rule_id"))
    changes = call.input.model_dump(include=call.input.model_fields_set)
    if "secret" in changes:
        _check_secret(call, changes["secret"])
    for name, value in changes.items():
        setattr(row, name, value)
    await call.session.flush()
    return rule_model(row)


async def delete_alert_rule(call: Call[None]) -> AlertRule:
    """Remove an alert rule and the record of its deliveries."""
    row = await repo.get_rule(call.session, call.principal.tenant, call.path_int("rule_id"))
    answer = rule_model(row)
    await call.session.delete(row)
    await call.session.flush()
    return answer


async def list_alert_deliveries(call: Call[DeliveryQuery]) -> Page[AlertDelivery]:
    """The caller's alerts, newest first, with their delivery status and attempts."""
    tenant = call.principal.tenant
    if call.input.rule is not None:
        await repo.get_rule(call.session, tenant, call.input.rule)
    before = decode_cursor(call.input.cursor, int)
    rows = await repo.list_deliveries(
        call.session,
        tenant,
        limit=call.input.limit + 1,
        before=before[0] if before else None,
        rule_id=call.input.rule,
    )
    page, cursor = one_page(rows, call.input.limit, lambda row: (row.id,))
    return Page[AlertDelivery](items=[delivery_model(row) for row in page], next_cursor=cursor)


def rule_model(row: RuleRow) -> AlertRule:
    """The API model of a rule row (the secret by name only)."""
    return AlertRule(
        id=row.id,
        kind=row.kind,
        url=row.url,
        definition=row.definition_name,
        secret=row.secret,
        threshold=row.threshold,
        window=_window(row.window_seconds),
        min_runs=row.min_runs,
        enabled=row.enabled,
        created_at=row.created_at,
    )


def delivery_model(row: DeliveryRow) -> AlertDelivery:
    """The API model of a delivery row."""
    return AlertDelivery(
        id=row.id,
        rule=row.rule_id,
        event=row.event_key,
        idempotency_key=row.idempotency_key,
        status=row.status,
        attempts=row.attempts,
        last_status=row.last_status,
        last_error=row.last_error,
        payload=row.payload,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def _window(seconds: int | None) -> str | None:
    return format_duration(timedelta(seconds=seconds)) if seconds else None


def _seconds(window: str | None) -> int | None:
    return None if window is None else max(1, int(parse_duration(window).total_seconds()))


def _check_secret(call: Call[Any], name: str) -> None:
    """Check that the starter can resolve the tenant's signing secret ``name``.

    Raises:
        Invalid: At ``secret``, saying why not (never with a value).
    """
    store = alert_secrets(call.request.app[keys.SETTINGS])
    message = None
    if store is None:
        message = "this starter has no alert secrets file (DAGFLOW_ALERT_SECRETS_FILE)"
    else:
        try:
            store.get(call.principal.tenant, name)
        except LookupError as error:
            message = str(error)
    if message is not None:
        raise Invalid(message, errors=[FieldError(path="secret", message=message)])


RULES = "/v1/alerts/rules"
RULE = f"{RULES}/{{rule_id}}"
ROUTES: list[Route[Any, Any]] = [
    Route("POST", RULES, create_alert_rule, AlertRule, AlertRuleCreate, status=201, tag="alerts"),
    Route("GET", RULES, list_alert_rules, Page[AlertRule], PageQuery, tag="alerts"),
    Route("GET", RULE, get_alert_rule, AlertRule, tag="alerts"),
    Route("PATCH", RULE, update_alert_rule, AlertRule, AlertRuleUpdate, tag="alerts"),
    Route("DELETE", RULE, delete_alert_rule, AlertRule, tag="alerts"),
    Route("GET", "/v1/alerts/deliveries", list_alert_deliveries, Page[AlertDelivery],
          DeliveryQuery, tag="alerts"),
]  # fmt: skip
"""The alert routes, for tenant keys."""
