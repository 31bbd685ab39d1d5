"""Which activity runs each ``uses:`` kind: the built-in ones and those plugins register.

A plugin is any installed distribution with an entry point in the group ``dagflow.steps``::

    [project.entry-points."dagflow.steps"]
    shout = "my_package.steps:shout"

The entry point's name is the kind; its object is an ``@activity.defn`` callable of that same
activity name, taking one :class:`~workflows.types.StepInput` and returning JSON-able data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from temporalio import activity

from activities.client import HttpClient
from activities.http import HttpSteps
from activities.secrets import SecretStore
from activities.webhook import WebhookSteps
from workflows.definition import BUILTIN_KINDS

PLUGIN_GROUP = "dagflow.steps"

StepActivity = Callable[..., Any]
"""An ``@activity.defn`` callable taking one ``StepInput``."""


class PluginError(Exception):
    """A step plugin cannot be used (the message names it and says why)."""


def builtin_step_activities(*, client: HttpClient, secrets: SecretStore) -> dict[str, StepActivity]:
    """The activities of the built-in kinds that run as activities, by kind.

    Args:
        client: The worker's HTTP client; close it when the worker stops.
        secrets: Where steps' secrets are resolved.
    """
    return {
        "http": HttpSteps(client, secrets).http,
        "webhook": WebhookSteps(client, secrets).webhook,
    }


def plugin_entry_points() -> list[EntryPoint]:
    """The installed entry points of group ``dagflow.steps``."""
    return list(entry_points(group=PLUGIN_GROUP))


def known_kinds(plugins: Iterable[EntryPoint] | None = None) -> frozenset[str]:
    """Every kind a definition may use: the built-in kinds and the plugins' names.

    Plugins are not imported: only their entry points are read.
    """
    found = plugin_entry_points() if plugins is None else plugins
    return BUILTIN_KINDS | {ep.name for ep in found}


def load_plugins(plugins: Iterable[EntryPoint] | None = None) -> dict[str, StepActivity]:
    """Import every step plugin and check it.

    Args:
        plugins: Entry points to load; the installed ``dagflow.steps`` ones when None.

    Returns:
        The plugins' activities, by kind.

    Raises:
        PluginError: If a plugin fails to import, is not an activity of its entry point's
            name, takes a built-in kind's name, or shares its name with another plugin.
    """
    loaded: dict[str, StepActivity] = {}
    origins: dict[str, str] = {}
    for ep in plugin_entry_points() if plugins is None else plugins:
        origin = _origin(ep)
        if ep.name in BUILTIN_KINDS:
            raise PluginError(f"step plugin {origin} takes the name of the built-in kind")
        if ep.name in loaded:
            raise PluginError(f"step plugins {origins[ep.name]} and {origin} share one name")
        loaded[ep.name] = _load(ep, origin)
        origins[ep.name] = origin
    return loaded


def _load(ep: EntryPoint, origin: str) -> StepActivity:
    try:
        fn: StepActivity = ep.load()
    except Exception as exc:
        raise PluginError(f"step plugin {origin} failed to import: {exc!r}") from exc
    # The SDK exposes an activity's definition only through this (stable) private helper.
    defn = activity._Definition.from_callable(fn) if callable(fn) else None
    if defn is None:
        raise PluginError(f"step plugin {origin} is not decorated with @activity.defn")
    if defn.name != ep.name:
        raise PluginError(
            f"step plugin {origin} is the activity {defn.name!r}; its activity name must be"
            f" the entry point's name, @activity.defn(name={ep.name!r})"
        )
    return fn


def _origin(ep: EntryPoint) -> str:
    dist = f" from {ep.dist.name}" if ep.dist is not None else ""
    return f"{ep.name!r} ({ep.value}{dist})"
