"""SecretStore: file and environment sources, their precedence, and reloading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from activities.secrets import SecretNotFoundError, SecretStore, env_name


@pytest.fixture
def secrets_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets.yaml"
    path.write_text(
        "acme:\n  stripe_key: acme-stripe\n"
        "'*':\n  stripe_key: shared-stripe\n  slack: shared-slack\n"
    )
    return path


def test_tenant_entry_wins_over_any_tenant_which_wins_over_env(secrets_file: Path) -> None:
    environ = {"DAGFLOW_SECRET_STRIPE_KEY": "env-stripe", "DAGFLOW_SECRET_PAGER": "env-pager"}
    store = SecretStore(file=secrets_file, environ=environ)
    assert store.get("acme", "stripe_key") == "acme-stripe"
    assert store.get("globex", "stripe_key") == "shared-stripe"
    assert store.get("acme", "slack") == "shared-slack"
    assert store.get("acme", "pager") == "env-pager"


def test_missing_secret_names_it_but_no_value(secrets_file: Path) -> None:
    store = SecretStore(file=secrets_file)
    with pytest.raises(SecretNotFoundError) as caught:
        store.get("acme", "github")
    assert "'github'" in str(caught.value) and "'acme'" in str(caught.value)
    assert "acme-stripe" not in str(caught.value)


def test_env_names_are_upper_cased_with_underscores() -> None:
    assert env_name("stripe-key.v2") == "DAGFLOW_SECRET_STRIPE_KEY_V2"
    store = SecretStore(environ={"DAGFLOW_SECRET_STRIPE_KEY_V2": "v"})
    assert store.get("any", "stripe-key.v2") == "v"


def test_json_files_work_too(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text('{"acme": {"token": "t"}}')
    assert SecretStore(file=path).get("acme", "token") == "t"


def test_from_env_reads_the_file_named_by_the_environment(secrets_file: Path) -> None:
    store = SecretStore.from_env({"DAGFLOW_SECRETS_FILE": str(secrets_file)})
    assert store.get("acme", "stripe_key") == "acme-stripe"
    with pytest.raises(SecretNotFoundError):
        SecretStore.from_env({}).get("acme", "stripe_key")


def test_a_changed_file_is_read_again(secrets_file: Path) -> None:
    store = SecretStore(file=secrets_file)
    secrets_file.write_text("acme:\n  stripe_key: rotated\n")
    stat = secrets_file.stat()
    os.utime(secrets_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert store.get("acme", "stripe_key") == "rotated"


@pytest.mark.parametrize(
    "text", ["- a list", "acme: just-a-string", "acme:\n  pin: 1234", "acme:\n  pin: null"]
)
def test_malformed_files_are_refused_without_showing_values(tmp_path: Path, text: str) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match="secrets file") as caught:
        SecretStore(file=path)
    assert "1234" not in str(caught.value)
