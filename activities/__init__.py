"""Step kinds with side effects, run as Temporal activities, and the plugin registry."""

from activities.client import HttpClient
from activities.http import HttpSteps
from activities.interceptor import LinearBackoffInterceptor
from activities.netguard import AddressGuard, GuardedResolver, parse_networks
from activities.registry import (
    PLUGIN_GROUP,
    PluginError,
    builtin_step_activities,
    known_kinds,
    load_plugins,
)
from activities.secrets import SecretNotFoundError, SecretStore
from activities.webhook import WebhookSteps, sign, signed_headers, verify_signature

__all__ = [
    "PLUGIN_GROUP",
    "AddressGuard",
    "GuardedResolver",
    "HttpClient",
    "HttpSteps",
    "LinearBackoffInterceptor",
    "PluginError",
    "SecretNotFoundError",
    "SecretStore",
    "WebhookSteps",
    "builtin_step_activities",
    "known_kinds",
    "load_plugins",
    "parse_networks",
    "sign",
    "signed_headers",
    "verify_signature",
]
