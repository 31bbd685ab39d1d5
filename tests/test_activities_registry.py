"""The kind registry: built-in activities and plugins found through ``dagflow.steps``.

Needs the test plugin installed: ``pip install -e tests/plugins``.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities.client import HttpClient
from activities.registry import (
    PLUGIN_GROUP,
    PluginError,
    builtin_step_activities,
    known_kinds,
    load_plugins,
)
from activities.secrets import SecretStore
from workflows.definition import BUILTIN_KINDS
from workflows.types import StepInput


def entry_point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=PLUGIN_GROUP)


def step_input(kind: str, **with_: object) -> StepInput:
    return StepInput.model_validate(
        {
            "tenant": "acme",
            "workflow_id": "acme/demo/1",
            "definition": "demo",
            "step": "s",
            "key": "s",
            "kind": kind,
            "with": with_,
            "idempotency_key": "acme/demo/1/s/1",
        }
    )


async def test_installed_test_plugin_is_discovered_and_runs() -> None:
    plugins = load_plugins()
    assert {"shout", "flaky"} <= plugins.keys()
    out = await ActivityEnvironment().run(plugins["shout"], step_input("shout", text="hi"))
    assert out == {"text": "HI"}


def test_known_kinds_are_the_built_ins_and_the_plugins() -> None:
    kinds = known_kinds()
    assert kinds >= BUILTIN_KINDS
    assert {"shout", "flaky"} <= kinds


async def test_builtin_activities_are_named_after_their_kinds() -> None:
    client = HttpClient()
    activities = builtin_step_activities(client=client, secrets=SecretStore())
    assert set(activities) == {"http", "webhook"}
    for kind, fn in activities.items():
        assert activity._Definition.must_from_callable(fn).name == kind
    await client.close()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (entry_point("broken", "dagflow_no_such_module:fn"), "'broken'.*failed to import"),
        (entry_point("cwd", "os:getcwd"), "'cwd'.*not decorated with @activity.defn"),
        (entry_point("yell", "dagflow_test_plugin:shout"), "activity name must be.*'yell'"),
        (entry_point("http", "dagflow_test_plugin:shout"), "'http'.*built-in kind"),
    ],
)
def test_unusable_plugins_are_refused_by_name(entry: EntryPoint, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        load_plugins([entry])


def test_two_plugins_with_one_name_are_refused() -> None:
    twice = [entry_point("shout", "dagflow_test_plugin:shout")] * 2
    with pytest.raises(PluginError, match="share one name"):
        load_plugins(twice)
