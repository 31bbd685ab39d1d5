"""The bench_engine shapes as Prefect 3 flows of no-op tasks, timed against a temporary Prefect
server on SQLite (``prefect.testing.utilities.prefect_test_harness``).

Run by bench/bench_engine.py with the Python of its Prefect virtualenv (``.bench/prefect-venv``,
bench/requirements-prefect.txt), never with dagflow's: ``python bench/prefect_flows.py --repeat
3 --shapes '{"chain": {"n": 50}}'``. It prints one JSON line: per shape, the wall seconds of each
measured run (after one warm-up run), or the error that stopped it. A shape starts no further
run once it has taken ``--budget`` seconds (a warm-up run over the budget is then its only
measured run).

- chain: a flow calling the task ``n`` times in a row, each with the output before plus one;
- fan_out: a root task, ``n`` tasks submitted at once with its output, then a join task;
- layers: ``depth`` layers of ``width`` submitted tasks, a layer after the whole layer before;
- throughput: ``runs`` async flows, each an ``n``-task chain, gathered at once in one process;
- dag: ``depth`` x ``width`` submitted tasks, each with ``wait_for`` its needs (three of the
  layer before, as bench/baseline.py's ``dag_needs``) and the first need's output plus one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from prefect import flow, task
from prefect.testing.utilities import prefect_test_harness


@task
def noop(value: int, plus: int = 0) -> int:
    """A no-op step: its input plus ``plus``."""
    return value + plus


@task
async def anoop(value: int, plus: int = 0) -> int:
    """The async no-op step of the throughput shape."""
    return value + plus


@flow
def chain(n: int) -> int:
    value = noop(0)
    for _ in range(1, n):
        value = noop(value, 1)
    return value


@flow
def fan_out(n: int) -> int:
    root = noop(0)
    middle = [noop.submit(root, i) for i in range(n)]
    values = [f.result() for f in middle]
    return noop(values[0], values[-1])


@flow
def layers(depth: int, width: int) -> list[int]:
    values = list(range(width))
    for layer in range(depth):
        plus = 1 if layer else 0
        futures = [noop.submit(v, plus) for v in values]
        values = [f.result() for f in futures]
    return values


@flow
async def chain_async(n: int) -> int:
    value = await anoop(0)
    for _ in range(1, n):
        value = await anoop(value, 1)
    return value


def dag_needs(depth: int, width: int) -> dict[str, list[str]]:
    """As bench/baseline.py's (that module needs temporalio, which this virtualenv lacks)."""
    needs: dict[str, list[str]] = {}
    for layer in range(depth):
        for j in range(width):
            before: list[str] = []
            if layer:
                for k in (j, (j + 1) % width, (j + 7) % width):
                    if f"l{layer - 1}_{k}" not in before:
                        before.append(f"l{layer - 1}_{k}")
            needs[f"l{layer}_{j}"] = before
    return needs


@flow
def dag(depth: int, width: int) -> list[int]:
    futures: dict[str, Any] = {}
    for key, needs in dag_needs(depth, width).items():
        if needs:
            first = futures[needs[0]]
            futures[key] = noop.submit(first, 1, wait_for=[futures[n] for n in needs[1:]])
        else:
            futures[key] = noop.submit(int(key.split("_")[1]))
    return [futures[f"l{depth - 1}_{j}"].result() for j in range(width)]


def throughput(runs: int, n: int) -> list[int]:
    async def all_at_once() -> list[int]:
        return list(await asyncio.gather(*(chain_async(n) for _ in range(runs))))

    return asyncio.run(all_at_once())


def expected(shape: str, size: dict[str, int]) -> Any:
    if shape in ("chain", "fan_out"):
        return size["n"] - 1
    if shape == "throughput":
        return [size["n"] - 1] * size["runs"]
    return [size["depth"] - 1 + j for j in range(size["width"])]


RUNNERS: dict[str, Callable[..., Any]] = {
    "chain": chain,
    "fan_out": fan_out,
    "layers": layers,
    "throughput": throughput,
    "dag": dag,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--shapes", required=True, help="JSON: shape name -> size arguments")
    parser.add_argument(
        "--budget", type=float, default=300.0, help="no further runs of a shape after this many s"
    )
    args = parser.parse_args()
    shapes: dict[str, dict[str, int]] = json.loads(args.shapes)
    logging.getLogger("prefect").setLevel(logging.ERROR)
    report: dict[str, dict[str, Any]] = {}
    with prefect_test_harness(server_startup_timeout=120):
        for shape, size in shapes.items():
            walls: list[float] = []
            began = time.perf_counter()
            try:
                for i in range(args.repeat + 1):
                    if i and time.perf_counter() - began > args.budget:
                        break
                    start = time.perf_counter()
                    out = RUNNERS[shape](**size)
                    wall = time.perf_counter() - start
                    if out != expected(shape, size):
                        raise RuntimeError(f"output {out!r}, expected {expected(shape, size)!r}")
                    if i or time.perf_counter() - began > args.budget:
                        walls.append(wall)  # a warm-up over the budget is the only run
                report[shape] = {"wall": walls}
            except Exception as e:  # any failure of Prefect is a result to report
                report[shape] = {"error": f"{type(e).__name__}: {e}"[:300], "wall_ok": walls}
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
