"""The service's request and response models; :mod:`starter.client` returns the same ones."""

from starter.api.commands import Binding, BindingCreate, Command, CommandRun, CommandSend
from starter.api.common import Page, RequestModel, ResponseModel
from starter.api.definitions import (
    DefinitionDetail,
    DefinitionSummary,
    Instantiate,
    Rollback,
    Scope,
    Validation,
    Version,
    VersionInfo,
)
from starter.api.health import Health
from starter.api.runs import (
    Action,
    RunDetail,
    RunRef,
    RunStart,
    RunSummary,
    RunTrace,
    StepError,
    StepErrors,
    StepState,
    StepTrace,
)
from starter.api.tenants import Key, KeyCreate, NewKey, Tenant, TenantCreate
from starter.errors import FieldError, ProblemDetails

__all__ = [
    "Action",
    "Binding",
    "BindingCreate",
    "Command",
    "CommandRun",
    "CommandSend",
    "DefinitionDetail",
    "DefinitionSummary",
    "FieldError",
    "Health",
    "Instantiate",
    "Key",
    "KeyCreate",
    "NewKey",
    "Page",
    "ProblemDetails",
    "RequestModel",
    "ResponseModel",
    "Rollback",
    "RunDetail",
    "RunRef",
    "RunStart",
    "RunSummary",
    "RunTrace",
    "Scope",
    "StepError",
    "StepErrors",
    "StepState",
    "StepTrace",
    "Tenant",
    "TenantCreate",
    "Validation",
    "Version",
    "VersionInfo",
]
