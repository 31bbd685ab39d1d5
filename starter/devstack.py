"""The pieces of ``dagflow dev`` beyond Temporal: ports, the starter service in-process, the
demo tenant and its credentials, the example definitions, the webhook secret.

Everything lives in the data folder (``.dagflow/`` by default) and survives restarts:
``dagflow.db`` (the starter's SQLite database), ``credentials.json`` (the demo tenant's API
key, mode 0600) and ``secrets.json`` (the worker's step secrets, mode 0600). Starting again
with the same folder reuses the tenant and its key and stores the examples again, as new
versions only when a file changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from starter.app import create_app
from starter.client import DagflowClient
from starter.devserver import PortInUseError, check_port_free
from starter.errors import Conflict, Forbidden, Unauthorized
from starter.migrations import upgrade
from starter.settings import ServiceSettings
from workflows.loading import load_definition

HOST = "127.0.0.1"
DEMO_TENANT = "demo"
CREDENTIALS_FILE = "credentials.json"
SECRETS_FILE = "secrets.json"
DATABASE_FILE = "dagflow.db"
WEBHOOK_SECRET = "webhook"


def check_ports(ports: Mapping[str, int], host: str = HOST) -> None:
    """Check every port the stack needs before anything starts.

    Args:
        ports: The flag that sets each port (``--api-port``) -> the port.

    Raises:
        PortInUseError: Naming every port that is taken (and its flag), or a port given twice.
    """
    problems: list[str] = []
    seen: dict[int, str] = {}
    for flag, port in ports.items():
        if port in seen:
            problems.append(f"{flag} {port} is also {seen[port]}")
            continue
        seen[port] = flag
        try:
            check_port_free(host, port)
        except PortInUseError as e:
            problems.append(f"{e} ({flag})")
    if problems:
        raise PortInUseError("; ".join(problems))


def write_private(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path``, readable by its owner only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2)
        out.write("\n")
    os.chmod(path, 0o600)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def webhook_secret(data_dir: Path) -> tuple[Path, str]:
    """The worker's secrets file in ``data_dir`` and the webhook signing secret in it.

    The file maps every tenant (``"*"``) to the secret named ``webhook``; it is made with a
    new random secret the first time and kept afterwards.
    """
    path = data_dir / SECRETS_FILE
    data = _read_json(path)
    value = data.get("*", {}).get(WEBHOOK_SECRET) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        value = f"whsec_{secrets.token_urlsafe(24)}"
        write_private(path, {"*": {WEBHOOK_SECRET: value}})
    return path, value


def new_instance_key() -> str:
    """A bootstrap instance key for one ``dagflow dev`` session (never stored)."""
    return f"dev-{secrets.token_urlsafe(24)}"


def service_settings(
    data_dir: Path, *, port: int, temporal_address: str, instance_key: str
) -> ServiceSettings:
    """The in-process starter's settings: SQLite in ``data_dir``, this session's instance key."""
    database = (data_dir / DATABASE_FILE).resolve()
    return ServiceSettings(
        host=HOST,
        port=port,
        database_url=f"sqlite+aiosqlite:///{database}",
        temporal_address=temporal_address,
        instance_key=instance_key,
    )


async def start_api(settings: ServiceSettings) -> tuple[web.AppRunner, str]:
    """Migrate the database and serve the starter; ``runner.cleanup()`` stops it.

    Returns:
        The runner and the service's base URL.
    """
    await upgrade(settings.database_url)
    runner = web.AppRunner(create_app(settings), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, f"http://{settings.host}:{runner.addresses[0][1]}"


@dataclass(frozen=True)
class Credentials:
    """What ``credentials.json`` holds: where the API is and the demo tenant's key."""

    api_url: str
    api_key: str
    tenant: str

    def as_json(self) -> dict[str, str]:
        """The file's content."""
        return {"api_url": self.api_url, "api_key": self.api_key, "tenant": self.tenant}


async def demo_tenant(api_url: str, instance_key: str, data_dir: Path) -> Credentials:
    """Make sure the demo tenant exists with a working key, and write ``credentials.json``.

    The key in an earlier ``credentials.json`` is kept while it still works, so restarts do
    not pile up keys; otherwise a new key is made.
    """
    path = data_dir / CREDENTIALS_FILE
    async with DagflowClient(api_url, instance_key) as admin:
        with contextlib.suppress(Conflict):
            await admin.instance.create_tenant(DEMO_TENANT, "Demo shop (dagflow dev)")
        old = _read_json(path)
        key = old.get("api_key") if isinstance(old, dict) else None
        if not (isinstance(key, str) and await _works(api_url, key)):
            key = (await admin.instance.create_key("dagflow dev", tenant=DEMO_TENANT)).key
    credentials = Credentials(api_url, key, DEMO_TENANT)
    write_private(path, credentials.as_json())
    return credentials


async def _works(api_url: str, key: str) -> bool:
    async with DagflowClient(api_url, key) as tenant:
        try:
            await tenant.definitions.list(limit=1)
        except (Unauthorized, Forbidden):
            return False
    return True


@dataclass(frozen=True)
class Loaded:
    """One example definition as stored."""

    name: str
    version: int
    created: bool


async def load_definitions(client: DagflowClient, files: list[Path]) -> list[Loaded]:
    """Store each file as a definition of the client's tenant: version 1 when the name is new,
    a new version when the content changed, nothing when it did not."""
    loaded = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        try:
            detail = await client.definitions.create(text)
        except Conflict:
            name = _name_of(text)
            detail = await client.definitions.update(name, text)
        loaded.append(Loaded(detail.name, detail.version.version, detail.created))
    return loaded


def _name_of(text: str) -> str:
    data = load_definition(text).data
    return str(data["name"]) if isinstance(data, dict) else ""
