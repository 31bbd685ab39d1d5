"""dagflow against hand-written Temporal workflows (and Prefect 3) on the same DAG shapes.

Run: ``python bench/bench_engine.py [--repeat N] [--shapes ...] [--servers memory sqlite]
[--no-prefect] [--small]``.

Shapes: a 50-step chain; 1 -> 200 -> 1 (a fan-out and a join); 10 layers of 10 where every step
needs the whole layer before; 100 concurrent runs of a 5-step chain (throughput); and a
1,000-step DAG (20 layers of 50, each step needing 3 of the layer before). Every step is the
same ``noop`` activity, with the same input, activity id, summary, timeout and retry policy in
both Temporal variants (bench/baseline.py), on the same worker (configured as ``build_worker``
does, so both pay for the StepAttemptInterceptor). Each shape runs on an in-memory dev server
and on a dev server keeping its state in a SQLite file (``--db-filename``): per server and
shape, one warm-up run of each variant, then ``--repeat`` runs of each, interleaved (ABBA), and
the median wall time from start to result. The ratio dagflow / hand-written is printed per
shape and server (target: 1.05 on the fan-out, layers and throughput shapes). Prefect 3 runs the
same shapes with no-op tasks in a virtualenv of its own (bench/prefect_flows.py, created on
first use in ``.bench/prefect-venv``) against a temporary Prefect server on SQLite; if it
cannot be installed or fails, the table says so. Exits 0 whatever the ratios, and 1 only if a
Temporal run gave a wrong output.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baseline import (
    RETRY,
    STEP_TIMEOUT,
    ChainWorkflow,
    DagWorkflow,
    FanOutWorkflow,
    LayersWorkflow,
    ShapeInput,
    dag_needs,
)
from common import (
    ROOT,
    MeteredExecutor,
    bench_worker,
    dev_server,
    machine,
    median,
    run_script,
    running,
    start_dag,
)
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from workflows.definition import BUILTIN_RETRY, DEFAULT_STEP_TIMEOUT, Definition
from workflows.scheduling import retry_policy
from workflows.search_attributes import run_attributes

TARGET = 1.05
"""The ratio dagflow / hand-written to meet on the shapes in TARGETED."""
TARGETED = ("fan_out", "layers", "throughput")
TENANT = "acme"
SERVERS = ("memory", "sqlite")
PREFECT_VENV = ROOT / ".bench" / "prefect-venv"
PREFECT_REQUIREMENTS = ROOT / "bench" / "requirements-prefect.txt"
RUN_LIMIT = 600.0
"""Seconds a measured run may take before the bench gives up on it."""


@dataclass(frozen=True)
class Shape:
    """One benchmark shape: the dagflow definition, its hand-written twin, how many at once."""

    name: str
    label: str
    definition: Definition
    baseline: Callable[..., Any]
    arg: ShapeInput
    expected: Any
    runs: int = 1


def _noop(value: str | int, needs: list[str] | None = None) -> dict[str, Any]:
    return {"uses": "noop", "needs": needs or [], "with": {"value": value}}


def _chain_definition(n: int) -> tuple[str, Definition]:
    steps = {"s0": _noop(0)}
    for i in range(1, n):
        steps[f"s{i}"] = _noop(f"${{{{ steps.s{i - 1}.output + 1 }}}}", [f"s{i - 1}"])
    name = f"bench-chain-{n}"
    definition = {"name": name, "steps": steps, "output": f"${{{{ steps.s{n - 1}.output }}}}"}
    return name, Definition.model_validate(definition)


def chain(n: int = 50) -> Shape:
    """s0 -> s1 -> ... -> s(n-1); each step's value is the one before's output plus one."""
    name, definition = _chain_definition(n)
    return Shape(
        "chain", f"chain {n}", definition, ChainWorkflow.run, ShapeInput(name=name, size=n), n - 1
    )


def fan_out(n: int = 200) -> Shape:
    """root -> m0..m(n-1) in parallel -> join."""
    middle = [f"m{i}" for i in range(n)]
    steps = {"root": _noop(0)}
    steps.update(
        {m: _noop(f"${{{{ steps.root.output + {i} }}}}", ["root"]) for i, m in enumerate(middle)}
    )
    steps["join"] = _noop(
        f"${{{{ steps.{middle[0]}.output + steps.{middle[-1]}.output }}}}", middle
    )
    name = f"bench-fan-out-{n}"
    definition = {"name": name, "steps": steps, "output": "${{ steps.join.output }}"}
    return Shape(
        "fan_out",
        f"1 -> {n} -> 1",
        Definition.model_validate(definition),
        FanOutWorkflow.run,
        ShapeInput(name=name, size=n),
        n - 1,
    )


def _layered(
    name: str, needs: dict[str, list[str]], depth: int, width: int
) -> tuple[Definition, list[int]]:
    """A definition of ``l{layer}_{j}`` steps, each ``l{layer - 1}_{j}``'s output plus one
    (layer 0: j); the output is the last layer's outputs."""
    steps: dict[str, Any] = {}
    for sid, before in needs.items():
        layer, j = (int(x) for x in sid[1:].split("_"))
        value = f"${{{{ steps.l{layer - 1}_{j}.output + 1 }}}}" if layer else j
        steps[sid] = _noop(value, before)
    last = ", ".join(f"steps.l{depth - 1}_{j}.output" for j in range(width))
    definition = {"name": name, "steps": steps, "output": f"${{{{ [{last}] }}}}"}
    return Definition.model_validate(definition), [depth - 1 + j for j in range(width)]


def layers(depth: int = 10, width: int = 10) -> Shape:
    """``depth`` layers of ``width`` steps; each step needs every step of the layer before."""
    needs = {
        f"l{layer}_{j}": [f"l{layer - 1}_{k}" for k in range(width)] if layer else []
        for layer in range(depth)
        for j in range(width)
    }
    name = f"bench-layers-{depth}x{width}"
    definition, expected = _layered(name, needs, depth, width)
    return Shape(
        "layers",
        f"{depth} layers x {width}",
        definition,
        LayersWorkflow.run,
        ShapeInput(name=name, size=depth, width=width),
        expected,
    )


def throughput(runs: int = 100, n: int = 5) -> Shape:
    """``runs`` runs of an ``n``-step chain started at once; the time until the last ends."""
    name, definition = _chain_definition(n)
    return Shape(
        "throughput",
        f"{runs} runs of chain {n}",
        definition,
        ChainWorkflow.run,
        ShapeInput(name=name, size=n),
        n - 1,
        runs=runs,
    )


def dag(depth: int = 20, width: int = 50) -> Shape:
    """``depth`` x ``width`` steps, each needing 3 of the layer before (baseline.dag_needs)."""
    name = f"bench-dag-{depth}x{width}"
    definition, expected = _layered(name, dag_needs(depth, width), depth, width)
    return Shape(
        "dag",
        f"DAG of {depth * width}",
        definition,
        DagWorkflow.run,
        ShapeInput(name=name, size=depth, width=width),
        expected,
    )


SHAPES: dict[str, Callable[[], Shape]] = {
    "chain": chain,
    "fan_out": fan_out,
    "layers": layers,
    "throughput": throughput,
    "dag": dag,
}
SMALL: dict[str, Callable[[], Shape]] = {
    "chain": lambda: chain(5),
    "fan_out": lambda: fan_out(10),
    "layers": lambda: layers(3, 3),
    "throughput": lambda: throughput(5, 3),
    "dag": lambda: dag(4, 5),
}
"""The same shapes at a few steps each (``--small``, for tests/test_bench.py)."""
PREFECT_SIZES = {
    "chain": {"n": 50},
    "fan_out": {"n": 200},
    "layers": {"depth": 10, "width": 10},
    "throughput": {"runs": 100, "n": 5},
    "dag": {"depth": 20, "width": 50},
}
PREFECT_SMALL = {
    "chain": {"n": 5},
    "fan_out": {"n": 10},
    "layers": {"depth": 3, "width": 3},
    "throughput": {"runs": 5, "n": 3},
    "dag": {"depth": 4, "width": 5},
}


@dataclass
class Sample:
    """One measurement: wall seconds; CPU seconds of the workflow code and of this whole process
    (client, worker, activities); history events and workflow tasks per run (continue-as-new
    runs added up)."""

    wall: float
    workflow_cpu: float
    cpu: float
    events: float = 0.0
    tasks: float = 0.0


@dataclass
class Result:
    """Samples of both variants of one shape on one server."""

    samples: dict[str, list[Sample]] = field(default_factory=lambda: {"hand": [], "dagrun": []})


async def history_counts(client: Client, handle: WorkflowHandle[Any, Any]) -> tuple[int, int]:
    """Events and completed workflow tasks of a run and the runs it continued as new into."""
    events = tasks = 0
    run_id: str | None = handle.first_execution_run_id or handle.result_run_id
    while run_id:
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        events += len(history.events)
        run_id = None
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                tasks += 1
            if event.HasField("workflow_execution_continued_as_new_event_attributes"):
                attrs = event.workflow_execution_continued_as_new_event_attributes
                run_id = attrs.new_execution_run_id
    return events, tasks


async def _start(
    client: Client, worker: Worker, shape: Shape, variant: str
) -> WorkflowHandle[Any, Any]:
    if variant == "dagrun":
        return await start_dag(client, worker, shape.definition, tenant=TENANT)
    return await client.start_workflow(
        shape.baseline,
        shape.arg,
        id=f"{TENANT}/{shape.arg.name}/{uuid.uuid4()}",
        task_queue=worker.task_queue,
        search_attributes=run_attributes(TENANT, shape.arg.name, 1),
    )


async def _run(
    client: Client, worker: Worker, executor: MeteredExecutor, shape: Shape, variant: str
) -> tuple[Sample, list[WorkflowHandle[Any, Any]]]:
    async def one() -> tuple[Any, WorkflowHandle[Any, Any]]:
        handle = await _start(client, worker, shape, variant)
        return await handle.result(), handle

    cpu, workflow_cpu = time.process_time(), executor.cpu
    start = time.perf_counter()
    done = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(shape.runs))), RUN_LIMIT)
    wall = time.perf_counter() - start
    cpu, workflow_cpu = time.process_time() - cpu, executor.cpu - workflow_cpu
    for output, _ in done:
        if output != shape.expected:
            raise SystemExit(
                f"{shape.name}/{variant}: output {output!r}, expected {shape.expected!r}"
            )
    return Sample(wall, workflow_cpu, cpu), [handle for _, handle in done]


async def measure(
    client: Client, worker: Worker, executor: MeteredExecutor, shape: Shape, repeat: int
) -> Result:
    """One warm-up run per variant, then ``repeat`` runs of each, interleaved ABBA."""
    variants = ("hand", "dagrun")
    for variant in variants:
        await _run(client, worker, executor, shape, variant)
    result = Result()
    for rep in range(repeat):
        for variant in variants if rep % 2 == 0 else variants[::-1]:
            sample, handles = await _run(client, worker, executor, shape, variant)
            counts = await asyncio.gather(*(history_counts(client, h) for h in handles))
            sample.events = sum(e for e, _ in counts) / len(counts)
            sample.tasks = sum(t for _, t in counts) / len(counts)
            result.samples[variant].append(sample)
    return result


class ProfiledExecutor(MeteredExecutor):
    """A MeteredExecutor that also runs every workflow activation under cProfile (``--profile``);
    the profiles are added up in ``stats()``."""

    def __init__(self) -> None:
        super().__init__()
        self._profiles: list[cProfile.Profile] = []
        self._plock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        def profiled() -> Any:
            profile = cProfile.Profile()
            try:
                return profile.runcall(fn, *args, **kwargs)
            finally:
                with self._plock:
                    self._profiles.append(profile)

        return super().submit(profiled)

    def stats(self) -> pstats.Stats | None:
        with self._plock:
            profiles = list(self._profiles)
        if not profiles:
            return None
        stats = pstats.Stats(profiles[0])
        for profile in profiles[1:]:
            stats.add(profile)
        return stats


async def run_server(
    server: str, shapes: list[Shape], repeat: int, profile: str | None
) -> dict[str, Result]:
    """Every shape on one dev server (in memory, or on a SQLite file in a temporary folder)."""
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="dagflow-bench-") as tmp:
        db = str(Path(tmp) / "temporal.db") if server == "sqlite" else None
        async with dev_server(db) as client:
            executor = ProfiledExecutor() if profile else MeteredExecutor()
            worker = bench_worker(
                client,
                extra_workflows=[ChainWorkflow, FanOutWorkflow, LayersWorkflow, DagWorkflow],
                executor=executor,
            )
            async with running(worker):
                for shape in shapes:
                    print(f"{server}: {shape.label} ...", flush=True)
                    results[shape.name] = await measure(client, worker, executor, shape, repeat)
            if isinstance(executor, ProfiledExecutor) and profile:
                stats = executor.stats()
                if stats is not None:
                    stats.dump_stats(f"{profile}.{server}")
                    print(f"profile of the workflow activations: {profile}.{server}")
    return results


# --- Prefect ------------------------------------------------------------------------------


def prefect_python(install: bool) -> tuple[str | None, str]:
    """The Python of the Prefect virtualenv (created and installed if ``install``), or None and
    why not."""
    python = PREFECT_VENV / "bin" / "python"
    check = [str(python), "-c", "import prefect; print(prefect.__version__)"]
    if python.exists():
        done = subprocess.run(check, capture_output=True, text=True)
        if done.returncode == 0:
            return str(python), done.stdout.strip()
    if not install:
        return None, f"not installed in {PREFECT_VENV.relative_to(ROOT)}"
    print(f"installing Prefect into {PREFECT_VENV.relative_to(ROOT)} ...", flush=True)
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(PREFECT_VENV)], check=True, capture_output=True
        )
        pip = [str(python), "-m", "pip", "install", "-q", "-r", str(PREFECT_REQUIREMENTS)]
        done = subprocess.run(pip, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"could not install: {e}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        return None, f"could not install: {last}"
    done = subprocess.run(check, capture_output=True, text=True)
    if done.returncode != 0:
        return None, "installed but does not import"
    return str(python), done.stdout.strip()


def run_prefect(
    python: str, shapes: list[str], repeat: int, small: bool
) -> dict[str, dict[str, Any]]:
    """Run bench/prefect_flows.py in the Prefect virtualenv; its JSON report per shape."""
    sizes = PREFECT_SMALL if small else PREFECT_SIZES
    spec = json.dumps({name: sizes[name] for name in shapes})
    with tempfile.TemporaryDirectory(prefix="dagflow-prefect-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "VIRTUAL_ENV"))}
        env.update(
            PREFECT_HOME=home,
            PREFECT_LOGGING_LEVEL="ERROR",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        command = [
            python,
            str(ROOT / "bench" / "prefect_flows.py"),
            "--repeat",
            str(repeat),
            "--shapes",
            spec,
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, env=env, timeout=3600, cwd=home
            )
        except subprocess.TimeoutExpired:
            return {name: {"error": "did not finish within an hour"} for name in shapes}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return {name: {"error": tail[:200]} for name in shapes}
    report: dict[str, dict[str, Any]] = json.loads(lines[-1])
    return report


# --- report -------------------------------------------------------------------------------


def _med(samples: list[Sample], attr: str) -> float:
    return median([getattr(s, attr) for s in samples])


def report(
    shapes: list[Shape],
    results: dict[str, dict[str, Result]],
    prefect: dict[str, dict[str, Any]] | None,
    prefect_note: str,
    repeat: int,
) -> None:
    """Print the tables."""
    print(f"\nmedian of {repeat} runs each (wall seconds, start to result of every run)")
    print(f"ratio = dagflow / hand-written; target <= {TARGET} on {', '.join(TARGETED)}\n")
    print(f"{'shape':<24} {'server':<7} {'hand-written s':>14} {'dagflow s':>10} {'ratio':>6}")
    over = []
    for shape in shapes:
        for server, by_shape in results.items():
            samples = by_shape[shape.name].samples
            hand, dag_s = _med(samples["hand"], "wall"), _med(samples["dagrun"], "wall")
            ratio = dag_s / hand
            mark = ""
            if shape.name in TARGETED:
                mark = "met" if ratio <= TARGET else "NOT MET"
                if ratio > TARGET:
                    over.append(f"{shape.name}/{server}")
            print(
                f"{shape.label:<24} {server:<7} {hand:>14.3f} {dag_s:>10.3f} {ratio:>6.2f}  {mark}"
            )
    print("\nmedians per measurement: CPU ms of the workflow code (activations) and of the whole")
    print("process (client, worker, activities); history events and workflow tasks per run\n")
    print(
        f"{'shape':<24} {'server':<7} {'wf CPU hand':>11} {'dagflow':>8} {'CPU hand':>9} "
        f"{'dagflow':>8} {'events hand':>11} {'dagflow':>8} {'WFTs hand':>9} {'dagflow':>8}"
    )
    for shape in shapes:
        for server, by_shape in results.items():
            s = by_shape[shape.name].samples
            row = [
                _med(s[v], attr) * scale
                for attr, scale in (
                    ("workflow_cpu", 1000),
                    ("cpu", 1000),
                    ("events", 1),
                    ("tasks", 1),
                )
                for v in ("hand", "dagrun")
            ]
            print(
                f"{shape.label:<24} {server:<7} {row[0]:>11.0f} {row[1]:>8.0f} {row[2]:>9.0f} "
                f"{row[3]:>8.0f} {row[4]:>11.0f} {row[5]:>8.0f} {row[6]:>9.0f} {row[7]:>8.0f}"
            )
    print(f"\nPrefect: {prefect_note}")
    if prefect is not None:
        servers = list(results)
        head = "".join(f" {'dagflow ' + s + ' / Prefect':>24}" for s in servers)
        print(f"\n{'shape':<24} {'Prefect s':>10} {'runs':>4}{head}")
        for shape in shapes:
            entry = prefect.get(shape.name, {"error": "not run"})
            if "wall" not in entry:
                print(f"{shape.label:<24} {'failed':>10}       {entry.get('error', '')}")
                continue
            wall = median(entry["wall"])
            cells = "".join(
                f" {_med(results[s][shape.name].samples['dagrun'], 'wall') / wall:>24.2f}"
                for s in servers
            )
            print(f"{shape.label:<24} {wall:>10.3f} {len(entry['wall']):>4}{cells}")
    if over:
        print(f"\nOVER TARGET ({TARGET}): {', '.join(over)}")
    else:
        print(f"\nevery targeted ratio met the target ({TARGET})")


async def main() -> None:
    """Measure every chosen shape on every chosen server, then Prefect; print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per variant")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument(
        "--small", action="store_true", help="a few steps per shape (a quick check that it runs)"
    )
    parser.add_argument(
        "--no-prefect", dest="prefect", action="store_false", help="leave Prefect out"
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="write a cProfile of the workflow activations to FILE.<server> (pstats format)",
    )
    args = parser.parse_args()
    # The baseline copies dagflow's step defaults; check they still agree.
    assert retry_policy(BUILTIN_RETRY)[0] == RETRY, "baseline RETRY drifted from dagflow's"
    assert DEFAULT_STEP_TIMEOUT == STEP_TIMEOUT, "baseline STEP_TIMEOUT drifted from dagflow's"
    table = SMALL if args.small else SHAPES
    shapes = [table[name]() for name in args.shapes]
    print(machine())
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results: dict[str, dict[str, Result]] = {}
    for server in args.servers:
        results[server] = await run_server(server, shapes, args.repeat, args.profile)
    prefect: dict[str, dict[str, Any]] | None = None
    if args.prefect:
        python, note = prefect_python(install=True)
        if python is not None:
            print(f"Prefect {note} ...", flush=True)
            prefect = run_prefect(python, args.shapes, args.repeat, args.small)
            note = f"Prefect {note}, temporary server on SQLite, median of {args.repeat}"
    else:
        note = "left out (--no-prefect)"
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    report(shapes, results, prefect, note, args.repeat)


if __name__ == "__main__":
    run_script(main)
