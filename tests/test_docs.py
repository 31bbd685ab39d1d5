"""Every command in the docs is run by a test or is a ``--help`` excerpt.

This harness finds every fenced ``sh``, ``bash``, ``shell``, ``console`` and ``python`` block in
README.md and docs/*.md and puts each in one class:

- **tested by another test**: an HTML comment on the line before the block names it, e.g.
  ``<!-- tested by tests/test_examples.py::test_dev_once -->`` (several, comma-separated); the
  harness checks that each named test exists.
- **a help excerpt**: a block whose first line is ``$ <command> ... --help``; the rest must be
  lines of the command's real help output, in order (a line ``...`` skips any lines).
- **run by the harness**: every other ``sh``, ``bash``, ``shell`` or ``python`` block.
  A ``console`` block that is neither of the others is unclassified, and so is a block after
  an HTML comment the harness does not know: both fail :func:`test_every_block_is_classified`
  with the file and line.

The blocks of one document run in order, the shell blocks in one ``bash`` (``set -euo
pipefail``) and the Python blocks in one namespace (top-level ``await`` allowed), so each can
build on the ones before. Each document gets a starter service of its own on a free port,
with a fresh SQLite database and the instance key ``change-me``; the demo services of
``dagflow dev`` when the document uses them; and, unless the document makes it itself
(:data:`MAKES_ITS_TENANT`), the tenant ``acme`` with a key. All documents share one worker
(built-in kinds, the test plugin, HTTP allowed to 127.0.0.0/8) and one Temporal namespace of
their own on the session's dev server (other tests' runs stay out of their lists), so the
workflow ids they make (tenant and run key) must differ from one document to the next.

What the blocks see:

- ``S`` and ``DAGFLOW_API_URL``: the service; ``http://127.0.0.1:8080`` (its default address)
  in a block is read as this address, and ``127.0.0.1:8288`` (the demo services of
  ``dagflow dev``) as theirs;
- ``ADMIN`` (``Authorization: Bearer change-me``), ``JSON`` (``Content-Type:
  application/json``), ``DAGFLOW_INSTANCE_KEY``;
- ``T`` (``Authorization: Bearer <acme's key>``) and ``DAGFLOW_API_KEY``, when the harness made
  the tenant;
- ``DAGFLOW_TEMPORAL_ADDRESS``, ``TEMPORAL_ADDRESS``, ``DAGFLOW_NAMESPACE`` and
  ``TEMPORAL_NAMESPACE`` (the ``temporal`` CLI reads the last two of them),
  ``DAGFLOW_TASK_QUEUE`` (the worker's queue), ``DAGFLOW_DATABASE_URL`` (the service's);
- ``PATH`` with the virtualenv's ``bin`` first (``dagflow``, ``temporal``, ``python``);
- a fresh working directory in which ``examples`` and ``docs`` link to the repository's.

Every command must exit 0, unless its line ends with ``# exits N`` (then N, and the comment
may go on: ``# exits 22: a 409``). ``curl`` runs with ``--fail-with-body --show-error``, so an
HTTP error answer exits 22. Bash's own rule still holds for ``a && b``: a failing ``a`` does
not stop the shell, so write commands that must succeed on lines of their own. Commands that
run until they are stopped (``dagflow dev``, ``serve``, ``worker``) cannot be run here: a block
with one must name its test. ``DAGFLOW_DOCS_TRANSCRIPT=FILE`` keeps what the blocks printed.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import io
import os
import re
import signal
import sys
import traceback
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.client import HttpClient
from activities.interceptor import LinearBackoffInterceptor
from activities.netguard import AddressGuard
from activities.registry import builtin_step_activities, load_plugins
from activities.secrets import SecretStore
from tests.engine import dag_worker
from tests.starter import Databases, running, service_settings
from worker.client import connect
from workflows import search_attributes

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL = frozenset({"sh", "bash", "shell"})
PYTHON = frozenset({"python", "py"})
CONSOLE = "console"
BIN = Path(sys.executable).parent

SERVICE_DEFAULT = "http://127.0.0.1:8080"
DEMO_DEFAULT = "127.0.0.1:8288"
INSTANCE_KEY = "change-me"
TENANT = "acme"
WEBHOOK_SECRET = "whsec-docs-demo"
MAKES_ITS_TENANT = frozenset({"docs/starter.md", "docs/client.md"})
"""Documents whose blocks create the tenant ``acme`` and its key themselves."""
BLOCK_TIMEOUT = 180.0
"""Seconds one block may take."""

_TESTED_BY = re.compile(r"^<!--\s*tested by\s+(.+?)\s*-->$")
_COMMENT = re.compile(r"^<!--.*-->$")
_HELP = re.compile(r"^\$ (\S.*\s--help)\s*$")
_STAYS_UP = re.compile(r"(^|[\s;&|(])(\S*/)?dagflow\s+(dev|serve|worker)\b(?!.*\s--(help|once)\b)")
"""Commands that run until they are stopped: a block with one cannot be run here."""


def stays_up(line: str) -> bool:
    """Whether a shell line runs a command that runs until it is stopped (comments aside)."""
    command = line.split(" #", 1)[0]
    return not command.lstrip().startswith("#") and _STAYS_UP.search(command) is not None


_EXITS = re.compile(r"^(?P<command>.*?\S)\s+# exits (?P<code>\d+)\b.*$")


# --- finding and classifying blocks ---------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A fenced code block of a document."""

    doc: str
    """The document, relative to the repository (``docs/starter.md``)."""
    line: int
    """The line of the opening fence (1-based)."""
    lang: str
    text: str
    comment: str | None
    """The HTML comment on the line before the block, if there is one."""

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


@dataclass(frozen=True)
class TestedBy:
    __test__ = False
    tests: tuple[str, ...]


@dataclass(frozen=True)
class Help:
    command: str
    excerpt: list[str]


@dataclass(frozen=True)
class Run:
    pass


@dataclass(frozen=True)
class Unclassified:
    reason: str


Kind = TestedBy | Help | Run | Unclassified


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with the comment right before each."""
    doc = path.relative_to(REPO).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped.startswith("```"):
            i += 1
            continue
        indent = len(lines[i]) - len(lines[i].lstrip())
        lang = stripped[3:].strip().split(" ")[0].lower()
        previous = lines[i - 1].strip() if i > 0 else ""
        comment = previous if _COMMENT.match(previous) else None
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        found.append(Block(doc, i + 1, lang, "\n".join(body) + "\n", comment))
        i = j + 1
    return found


def commands_of(path: Path) -> list[Block]:
    """The blocks the rule is about: shell, console and Python."""
    return [b for b in blocks(path) if b.lang in SHELL | PYTHON | {CONSOLE}]


def classify(block: Block) -> Kind:
    """Which class a block is in (see the module's docstring)."""
    if block.comment is not None:
        tested = _TESTED_BY.match(block.comment)
        if tested is None:
            return Unclassified(f"an HTML comment the harness does not know: {block.comment}")
        return TestedBy(tuple(t.strip() for t in tested.group(1).split(",")))
    first, *rest = block.text.splitlines() or [""]
    helped = _HELP.match(first)
    if helped is not None:
        return Help(helped.group(1), rest)
    long_running = next((line for line in block.text.splitlines() if stays_up(line)), None)
    if block.lang in SHELL and long_running is not None:
        return Unclassified(
            f"`{long_running.strip()}` runs until it is stopped, so the harness cannot run the "
            "block: name the test that runs it (<!-- tested by tests/...::test_x -->)"
        )
    if block.lang == CONSOLE:
        return Unclassified(
            "a console block is a help excerpt (first line `$ ... --help`) or names its test "
            "(<!-- tested by tests/...::test_x -->)"
        )
    return Run()


ALL_BLOCKS = [block for path in DOCS for block in commands_of(path)]
HELP_BLOCKS = [b for b in ALL_BLOCKS if isinstance(classify(b), Help)]
RUN_DOCS = sorted({b.doc for b in ALL_BLOCKS if isinstance(classify(b), Run)})


def test_every_block_is_classified() -> None:
    problems = [
        f"{b.where}: {kind.reason}"
        for b in ALL_BLOCKS
        if isinstance(kind := classify(b), Unclassified)
    ]
    assert not problems, "unclassified blocks:\n" + "\n".join(problems)


def test_named_tests_exist() -> None:
    problems = []
    for block in ALL_BLOCKS:
        kind = classify(block)
        if isinstance(kind, TestedBy):
            problems += [f"{block.where}: {why}" for t in kind.tests if (why := _missing(t))]
    assert not problems, "\n".join(problems)


def _missing(test: str) -> str | None:
    """Why ``tests/x.py::test_y`` (or ``::Class::test_y``) names no test, or None."""
    path, _, name = test.partition("::")
    file = REPO / path
    if not name or not path.startswith("tests/") or not file.is_file():
        return f"{test}: write tests/<file>.py::<test>, of a file that exists"
    names = name.split("[", 1)[0].split("::")
    scope: list[ast.stmt] = ast.parse(file.read_text(encoding="utf-8")).body
    for part in names:
        node = next(
            (
                n
                for n in scope
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and n.name == part
            ),
            None,
        )
        if node is None:
            return f"{test}: {path} has no {part}"
        scope = node.body
    return None


# --- help excerpts ----------------------------------------------------------------------------


@pytest.mark.parametrize("block", HELP_BLOCKS, ids=[b.where for b in HELP_BLOCKS])
async def test_help_excerpt_matches(block: Block) -> None:
    kind = classify(block)
    assert isinstance(kind, Help)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["COLUMNS"] = "100"
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        kind.command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=REPO,  # --help changes nothing; bench/ scripts are named from the repository
        env=env,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode()
    real = [line.rstrip() for line in out.decode().splitlines()]
    missing = excerpt_problem(kind.excerpt, real)
    assert missing is None, f"{block.where}: {missing}\n--- real help:\n" + "\n".join(real)


def excerpt_problem(excerpt: list[str], real: list[str]) -> str | None:
    """Why ``excerpt`` is not in ``real`` in order, or None.

    Lines ``...`` split the excerpt into chunks that may be apart; within a chunk, the words
    must follow each other. Runs of spaces and line breaks count as one space, so an excerpt
    may align or wrap its lines differently from the terminal.
    """
    chunks: list[list[str]] = [[]]
    for line in excerpt:
        if line.strip() == "...":
            chunks.append([])
        else:
            chunks[-1] += line.split()
    text = " " + " ".join(" ".join(real).split()) + " "
    at = 0
    for chunk in chunks:
        if not chunk:
            continue
        wanted = " " + " ".join(chunk) + " "
        found = text.find(wanted, at)
        if found < 0:
            return f"not in the help output (in this order): {' '.join(chunk)!r}"
        at = found + len(wanted) - 1
    return None


def test_excerpt_matching() -> None:
    real = ["Usage: x", "", "Options:", "  --a  A", "  --b  Bee", "     wrapped", "  --c  C"]
    assert excerpt_problem(["Usage: x", "...", "  --b Bee wrapped", "--c  C"], real) is None
    assert excerpt_problem(["  --c  C", "...", "  --b  Bee"], real) is not None
    assert excerpt_problem(["Usage: x", "  --a  A"], real) is not None
    assert excerpt_problem(["--b  Be"], real) is not None


# --- the live stack ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def docs_client(client: Client, temporal_address: str) -> Client:
    """A client of a Temporal namespace of the documents' own, with dagflow's search
    attributes: other tests' runs of the tenant ``acme`` do not show in the documents' lists."""
    namespace = f"docs-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    attributes = {key.name: int(key.indexed_value_type) for key in search_attributes.ALL}
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(namespace=namespace, search_attributes=attributes)
    )
    return await connect(temporal_address, namespace)


@pytest.fixture(scope="module")
async def docs_worker(docs_client: Client) -> AsyncIterator[Worker]:
    """A worker like ``dagflow worker --allow-network 127.0.0.0/8``, with the test plugin.

    One for every document, so the runs of earlier documents still answer queries (a query of
    a closed run needs a worker too), as they would in a deployment.
    """
    secrets = SecretStore(environ={"DAGFLOW_SECRET_WEBHOOK": WEBHOOK_SECRET})
    http = HttpClient(guard=AddressGuard(["127.0.0.0/8"]))
    kinds = {**builtin_step_activities(client=http, secrets=secrets), **load_plugins()}
    queue = f"docs-{uuid.uuid4()}"
    activities = list(kinds.values())
    async with dag_worker(docs_client, activities, [LinearBackoffInterceptor()], queue) as w:
        yield w
    await http.close()


@dataclass
class Stack:
    """What one document's blocks run against."""

    api_url: str
    temporal_address: str
    namespace: str
    task_queue: str
    database_url: str
    folder: Path
    tenant_key: str | None = None
    demo_url: str | None = None

    def env(self) -> dict[str, str]:
        """The environment of the document's shell (see the module's docstring)."""
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "COLUMNS": "100",
            "S": self.api_url,
            "ADMIN": f"Authorization: Bearer {INSTANCE_KEY}",
            "JSON": "Content-Type: application/json",
            "DAGFLOW_INSTANCE_KEY": INSTANCE_KEY,
            "DAGFLOW_API_URL": self.api_url,
            "DAGFLOW_TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "DAGFLOW_NAMESPACE": self.namespace,
            "TEMPORAL_NAMESPACE": self.namespace,
            "DAGFLOW_TASK_QUEUE": self.task_queue,
            "DAGFLOW_DATABASE_URL": self.database_url,
        }
        for name in ("DAGFLOW_API_KEY", "T", "DAGFLOW_SECRETS_FILE", "VIRTUAL_ENV"):
            env.pop(name, None)
        if self.tenant_key is not None:
            env["T"] = f"Authorization: Bearer {self.tenant_key}"
            env["DAGFLOW_API_KEY"] = self.tenant_key
        return env

    def substitute(self, text: str) -> str:
        """A block's text with the documented default addresses read as the stack's."""
        text = text.replace(SERVICE_DEFAULT, self.api_url)
        if self.demo_url is not None:
            text = text.replace(f"http://{DEMO_DEFAULT}", self.demo_url)
        return text


@contextlib.asynccontextmanager
async def stack_for(
    doc: str, worker: Worker, temporal_address: str, folder: Path
) -> AsyncIterator[Stack]:
    """A fresh service (and demo services, and tenant) for one document."""
    database_url = await Databases("sqlite", folder).fresh()
    namespace = worker.client.namespace
    settings = service_settings(
        database_url,
        temporal_address,
        namespace=namespace,
        task_queue=worker.task_queue,
        instance_key=INSTANCE_KEY,
    )
    work = folder / "work"
    work.mkdir()
    for name in ("examples", "docs"):
        (work / name).symlink_to(REPO / name, target_is_directory=True)
    async with running(settings) as service, contextlib.AsyncExitStack() as stack:
        found = Stack(
            service.base_url, temporal_address, namespace, worker.task_queue, database_url, work
        )
        if doc not in MAKES_ITS_TENANT:
            admin = service.client(INSTANCE_KEY)
            await admin.instance.create_tenant(TENANT, "Acme Corp")
            found.tenant_key = (await admin.instance.create_key("docs", tenant=TENANT)).key
        text = (REPO / doc).read_text(encoding="utf-8")
        if DEMO_DEFAULT in text:
            from starter import demo

            services = await demo.start(webhook_secret=WEBHOOK_SECRET)
            stack.push_async_callback(services.stop)
            found.demo_url = services.url
        yield found


# --- running a document -----------------------------------------------------------------------


class BlockFailed(AssertionError):
    """A block of a document did not do what it says."""


@dataclass
class Shell:
    """One bash for the shell blocks of a document, fed a block at a time."""

    proc: asyncio.subprocess.Process
    folder: Path
    count: int = 0
    transcript: list[str] = field(default_factory=list)

    PRELUDE = (
        "set -euo pipefail\n"
        'curl() { local rc=0; command curl --show-error --fail-with-body "$@" || rc=$?; '
        "return $rc; }\n"
        'trap \'__rc=$?; printf "\\n__ERR__ %s %s %s\\n" '
        '"${BASH_SOURCE[0]:-?}" $LINENO $__rc\' ERR\n'
    )

    @classmethod
    async def start(cls, stack: Stack) -> Shell:
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "--noprofile",
            "--norc",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=stack.folder,
            env=stack.env(),
            start_new_session=True,
        )
        shell = cls(proc, stack.folder.parent / "blocks")
        shell.folder.mkdir()
        shell._send(cls.PRELUDE)
        return shell

    def _send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())

    async def run(self, block: Block, text: str) -> None:
        self.count += 1
        script = self.folder / f"{self.count:03d}.sh"
        script.write_text(script_of(text), encoding="utf-8")
        self._send(f"source {script} </dev/null\nprintf '\\n__DONE__ {self.count}\\n'\n")
        output: list[str] = []
        assert self.proc.stdout is not None
        deadline = asyncio.get_running_loop().time() + BLOCK_TIMEOUT
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:
                raw = await asyncio.wait_for(self.proc.stdout.readline(), max(left, 0.1))
            except TimeoutError:
                shown = "\n".join(output[-40:])
                raise BlockFailed(
                    f"{block.where}: still running after {BLOCK_TIMEOUT:.0f}s\n"
                    f"--- output of the block:\n{shown}"
                ) from None
            line = raw.decode(errors="replace").rstrip("\n")
            if not raw:
                raise BlockFailed(self._failure(block, output))
            if line == f"__DONE__ {self.count}":
                self.transcript += [f"## {block.where}", *output]
                return
            output.append(line)

    def _failure(self, block: Block, output: list[str]) -> str:
        errors = [line for line in output if line.startswith("__ERR__ ")]
        where = f"{block.where} (the block)"
        if errors:
            _, source, lineno, code = errors[-1].split(" ")
            if source.endswith(f"{self.count:03d}.sh"):
                where = f"{block.doc}:{block.line + int(lineno)}: exit {code}"
        shown = [line for line in output if not line.startswith("__ERR__ ")][-40:]
        return f"{where}\n--- output of the block:\n" + "\n".join(shown)

    async def close(self) -> None:
        """End the shell and whatever its blocks left running (its process group)."""
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        if self.proc.returncode is None:
            await self.proc.wait()


def script_of(text: str) -> str:
    """A shell block as bash runs it: lines ending ``# exits N`` must exit N (line for line,
    so bash's line numbers are the block's)."""
    out = []
    for line in text.splitlines():
        expected = _EXITS.match(line)
        if expected is None:
            out.append(line)
            continue
        command, code = expected.group("command"), expected.group("code")
        out.append(
            f"if {command}; then __rc=0; else __rc=$?; fi; "
            f'[ "$__rc" = {code} ] || {{ echo "expected exit {code}, got $__rc" >&2; false; }}'
        )
    return "\n".join(out) + "\n"


def test_commands_that_stay_up_are_not_run() -> None:
    for line in [
        "dagflow dev",
        ".venv/bin/pip install -e . && .venv/bin/dagflow dev   # comment",
        "DAGFLOW_INSTANCE_KEY=x dagflow serve --port 8080",
        "dagflow worker --address temporal.internal:7233",
    ]:
        assert stays_up(line), line
    for line in [
        "dagflow dev --once",
        "dagflow worker --help",
        "dagflow run x.yaml",
        "# with dagflow dev running",
        "dagflow run x.yaml  # with dagflow dev running",
    ]:
        assert not stays_up(line), line


def test_script_of_checks_expected_exits() -> None:
    script = script_of("dagflow validate bad.yaml   # exits 2\necho ok\n")
    first, second = script.splitlines()
    assert first.startswith("if dagflow validate bad.yaml; then")
    assert '[ "$__rc" = 2 ]' in first
    assert second == "echo ok"


async def run_python(block: Block, text: str, namespace: dict[str, Any]) -> str:
    """Run a Python block in the document's namespace (top-level ``await`` allowed)."""
    out = io.StringIO()
    try:
        code = compile(text, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        with contextlib.redirect_stdout(out):
            result = eval(code, namespace)
            if inspect.iscoroutine(result):
                await result
    except Exception as error:
        frames = [
            f"{block.doc}:{block.line + f.lineno}: {f.line}"
            for f in traceback.extract_tb(error.__traceback__)
            if f.filename == block.where and f.lineno is not None
        ]
        raise BlockFailed(
            f"{frames[-1] if frames else block.where}: {type(error).__name__}: {error}\n"
            f"--- output of the block:\n{out.getvalue()}"
        ) from error
    return out.getvalue()


def run_blocks(doc: str) -> Iterator[Block]:
    """The blocks of a document that the harness runs, in order."""
    for block in commands_of(REPO / doc):
        if isinstance(classify(block), Run):
            yield block


@pytest.mark.parametrize("doc", RUN_DOCS)
async def test_doc_runs(
    doc: str,
    docs_worker: Worker,
    temporal_address: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unclassified = [
        b.where for b in commands_of(REPO / doc) if isinstance(classify(b), Unclassified)
    ]
    assert not unclassified, f"not run: unclassified blocks at {', '.join(unclassified)}"
    async with stack_for(doc, docs_worker, temporal_address, tmp_path) as stack:
        monkeypatch.chdir(stack.folder)
        for name, value in stack.env().items():
            monkeypatch.setenv(name, value)
        shell = await Shell.start(stack)
        namespace: dict[str, Any] = {"__name__": f"docs:{doc}"}
        try:
            for block in run_blocks(doc):
                text = stack.substitute(block.text)
                if block.lang in PYTHON:
                    printed = await run_python(block, text, namespace)
                    shell.transcript += [f"## {block.where}", printed]
                else:
                    await shell.run(block, text)
        finally:
            await shell.close()
            save_transcript(shell.transcript)
            await terminate_open_runs(docs_worker)


async def terminate_open_runs(worker: Worker) -> None:
    """End the runs a document left open (they would call its stopped demo services)."""
    query = f"TaskQueue = '{worker.task_queue}' AND ExecutionStatus = 'Running'"
    async for execution in worker.client.list_workflows(query):
        with contextlib.suppress(RPCError):
            await worker.client.get_workflow_handle(execution.id).terminate("the document ended")


def save_transcript(lines: list[str]) -> None:
    """With ``DAGFLOW_DOCS_TRANSCRIPT=FILE``, keep what the shell blocks printed (to read the
    answers the docs quote)."""
    target = os.environ.get("DAGFLOW_DOCS_TRANSCRIPT")
    if target:
        Path(target).write_text("\n".join(lines) + "\n", encoding="utf-8")
