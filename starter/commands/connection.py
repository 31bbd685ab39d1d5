"""Where the starter service is and which API key to send: flags, environment, credentials file.

Settings come from the first of:

1. the flags ``--api-url`` and ``--api-key``;
2. the environment variables ``DAGFLOW_API_URL`` and ``DAGFLOW_API_KEY``;
3. ``.dagflow/credentials.json`` in the current directory (``dagflow dev`` writes it, mode
   0600), used only for what 1 and 2 leave unset;
4. the default URL ``http://127.0.0.1:8080`` (and no key).

The credentials file is one JSON object::

    {"api_url": "http://127.0.0.1:8080", "api_key": "dfk_...", "tenant": "dev"}

``api_url`` is where the service listens, ``api_key`` a key of ``tenant`` (or an instance key,
with ``tenant`` null); every field is optional. The file's key goes only to the file's URL:
when a flag or the environment names another URL, the file's key is not sent there. A file
that others may read draws a warning, as ssh does.

The key is never printed: messages name where it came from, not what it is.
"""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import click
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from starter.client import DagflowClient
from starter.commands.exits import BAD_INPUT, UNREACHABLE, fail
from starter.errors import ApiError, RateLimited, Unauthorized

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_API_URL = "http://127.0.0.1:8080"
CREDENTIALS_FILE = Path(".dagflow") / "credentials.json"
"""Relative to the current directory."""


class ApiSettings(BaseSettings):
    """``DAGFLOW_API_URL`` and ``DAGFLOW_API_KEY`` (flags override them)."""

    model_config = SettingsConfigDict(env_prefix="DAGFLOW_", extra="ignore")

    api_url: str | None = None
    api_key: SecretStr | None = None


class Credentials(BaseModel):
    """The content of ``.dagflow/credentials.json``."""

    model_config = ConfigDict(extra="ignore")

    api_url: str | None = None
    api_key: SecretStr | None = None
    tenant: str | None = None


@dataclass(frozen=True)
class Connection:
    """The service to call and the key to call it with."""

    api_url: str
    api_key: SecretStr | None
    key_source: str
    """Where the key came from, for messages: a flag, a variable, the file, or nothing."""
    tenant: str | None = None
    """The tenant the credentials file names, if the key came from it."""


def resolve(api_url: str | None, api_key: str | None, *, cwd: Path | None = None) -> Connection:
    """The connection from flags (None when not given), environment and credentials file."""
    env = ApiSettings()
    url = api_url or env.api_url
    key = SecretStr(api_key) if api_key else env.api_key
    source = "--api-key" if api_key else "DAGFLOW_API_KEY" if key else "no API key"
    tenant: str | None = None
    if key is None or url is None:
        path = (cwd or Path.cwd()) / CREDENTIALS_FILE
        creds = read_credentials(path)
        if creds is not None:
            url = url or creds.api_url
            if key is None and creds.api_key and _same_url(url, creds.api_url):
                key, source, tenant = creds.api_key, str(CREDENTIALS_FILE), creds.tenant
    return Connection((url or DEFAULT_API_URL).rstrip("/"), key, source, tenant)


def read_credentials(path: Path) -> Credentials | None:
    """The credentials file, or None if there is none; exits 2 if it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as e:
        fail(BAD_INPUT, f"cannot read {path}: {e.strerror or e}")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        click.echo(
            f"warning: {path} is readable by others; restrict it with: chmod 600 {path}",
            err=True,
        )
    try:
        return Credentials.model_validate(json.loads(text))
    except (json.JSONDecodeError, ValidationError):
        fail(
            BAD_INPUT,
            f"{path} is not a credentials file: expected a JSON object like "
            '{"api_url": "...", "api_key": "...", "tenant": "..."}',
        )


def _same_url(url: str | None, file_url: str | None) -> bool:
    """Whether a key stored for ``file_url`` may go to ``url`` (unset means the default)."""
    return (url or DEFAULT_API_URL).rstrip("/") == (file_url or DEFAULT_API_URL).rstrip("/")


def api_options(fn: F) -> F:
    """Add ``--api-url`` and ``--api-key`` to a command; it receives ``api: Connection``."""

    @wraps(fn)
    def command(*args: Any, api_url: str | None, api_key: str | None, **kwargs: Any) -> Any:
        return fn(*args, api=resolve(api_url, api_key), **kwargs)

    command = click.option(
        "--api-key",
        metavar="KEY",
        help="API key [DAGFLOW_API_KEY; else .dagflow/credentials.json].",
    )(command)
    command = click.option(
        "--api-url",
        metavar="URL",
        help=f"The starter service [DAGFLOW_API_URL; default {DEFAULT_API_URL}].",
    )(command)
    return command  # type: ignore[return-value]


class CommandError(Exception):
    """Leave the command with ``code`` after printing ``message`` on stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def call(api: Connection, action: Callable[[DagflowClient], Awaitable[T]]) -> T:
    """Run ``action`` with a client of the service; errors become messages and exit codes.

    4xx answers exit 2 with the problem and every field error, 5xx answers and a service that
    does not answer exit 3; actions raise :class:`CommandError` for their own outcomes.
    """
    try:
        return asyncio.run(_call(api, action))
    except CommandError as e:
        fail(e.code, e.message)


async def _call(api: Connection, action: Callable[[DagflowClient], Awaitable[T]]) -> T:
    key = api.api_key.get_secret_value() if api.api_key else None
    async with DagflowClient(api.api_url, key) as client:
        try:
            return await action(client)
        except ApiError as e:
            raise CommandError(_code_of(e), describe(e, api)) from None
        except BrokenPipeError:
            raise  # our reader went away (`| head`): click ends the command quietly
        except aiohttp.InvalidURL:
            raise CommandError(BAD_INPUT, f"not a URL: {api.api_url!r} (--api-url)") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            reason = str(e) or type(e).__name__
            raise CommandError(
                UNREACHABLE,
                f"cannot reach the dagflow service at {api.api_url}: {reason}\n"
                "start one with `dagflow serve`, or pass --api-url / set DAGFLOW_API_URL",
            ) from None
        except ValidationError:
            raise CommandError(
                UNREACHABLE,
                f"{api.api_url} answered something that is not the dagflow service's answer: "
                "is --api-url / DAGFLOW_API_URL right?",
            ) from None


def _code_of(error: ApiError) -> int:
    return UNREACHABLE if error.problem.status >= 500 else BAD_INPUT


def describe(error: ApiError, api: Connection) -> str:
    """The problem as people read it: status, title, detail, then every field error."""
    problem = error.problem
    head = f"error: {problem.title} ({problem.status})"
    if problem.detail and problem.detail != problem.title:
        head += f": {problem.detail}"
    lines = [head, *(f"  {e.path}: {e.message}" for e in problem.errors or [])]
    if isinstance(error, Unauthorized):
        lines.append(
            f"  the key came from: {api.key_source}; pass --api-key, set DAGFLOW_API_KEY, or "
            f"run where {CREDENTIALS_FILE} holds a key for {api.api_url}"
        )
    elif isinstance(error, RateLimited) and error.retry_after is not None:
        lines.append(f"  retry after {error.retry_after:g}s")
    elif problem.status >= 500:
        lines.append(f"  the service at {api.api_url} cannot answer now; retry later")
    return "\n".join(lines)
