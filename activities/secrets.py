"""Secrets that steps name (``secret: stripe_key``) and only activities resolve.

Values never enter workflow history, logs or error messages. Two sources, most specific first:

1. a YAML or JSON file mapping tenants to their secrets, ``{tenant: {name: value}}``, where the
   tenant ``"*"`` holds secrets every tenant may use (a tenant's own entry wins);
2. environment variables ``DAGFLOW_SECRET_<NAME>`` (instance-wide; the name upper-cased, every
   character other than a letter or digit turned into ``_``).

The file is read again when it changes, so secrets rotate without restarting the worker.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ANY_TENANT = "*"
ENV_PREFIX = "DAGFLOW_SECRET_"
FILE_ENV = "DAGFLOW_SECRETS_FILE"

Secrets = dict[str, dict[str, str]]


class SecretNotFoundError(LookupError):
    """No source holds the secret (the message names it, never a value)."""

    def __init__(self, tenant: str, name: str) -> None:
        super().__init__(f"secret {name!r} is not configured for tenant {tenant!r}")
        self.tenant = tenant
        self.name = name


class SecretStore:
    """Resolves ``(tenant, name)`` to a secret value.

    Args:
        file: A YAML or JSON secrets file, or None.
        environ: Where ``DAGFLOW_SECRET_*`` variables are read; nothing when None.

    Raises:
        ValueError: If the file is not a mapping of tenants to mappings of names to strings.
    """

    def __init__(
        self, *, file: str | Path | None = None, environ: Mapping[str, str] | None = None
    ) -> None:
        self._file = Path(file) if file is not None else None
        self._environ: Mapping[str, str] = environ or {}
        self._loaded_mtime: int | None = None
        self._by_tenant: Secrets = {}
        self._reload_if_changed()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SecretStore:
        """A store over ``DAGFLOW_SECRETS_FILE`` (if set) and ``DAGFLOW_SECRET_*`` variables.

        Args:
            environ: The environment to read; ``os.environ`` when None.
        """
        env = os.environ if environ is None else environ
        return cls(file=env.get(FILE_ENV) or None, environ=env)

    def get(self, tenant: str, name: str) -> str:
        """The value of secret ``name`` for ``tenant``.

        Raises:
            SecretNotFoundError: If no source holds it.
        """
        self._reload_if_changed()
        for scope in (tenant, ANY_TENANT):
            value = self._by_tenant.get(scope, {}).get(name)
            if value is not None:
                return value
        value = self._environ.get(env_name(name))
        if value is None:
            raise SecretNotFoundError(tenant, name)
        return value

    def _reload_if_changed(self) -> None:
        if self._file is None:
            return
        mtime = self._file.stat().st_mtime_ns
        if mtime != self._loaded_mtime:
            self._by_tenant = _parse(self._file)
            self._loaded_mtime = mtime


def env_name(name: str) -> str:
    """The environment variable that holds instance-wide secret ``name``."""
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _parse(path: Path) -> Secrets:
    data: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    problem = f"secrets file {path}: expected {{tenant: {{name: value}}}} with string values"
    if not isinstance(data, dict):
        raise ValueError(problem)
    for tenant, secrets in data.items():
        if not isinstance(secrets, dict):
            raise ValueError(f"{problem}; tenant {tenant!r} is not a mapping")
        for name, value in secrets.items():
            if not isinstance(value, str):
                raise ValueError(f"{problem}; {tenant}.{name} is not a string")
    return {str(t): {str(n): v for n, v in s.items()} for t, s in data.items()}
