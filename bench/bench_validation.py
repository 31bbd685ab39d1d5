"""Validation wall time for 5,000-step definitions of three shapes (median of 5 runs).

Run: ``python bench/bench_validation.py [--steps N] [--runs R]``. Every step has two
expressions: an ``if`` on the input (seven distinct ones, as real definitions repeat
conditions) and a ``with`` value that reads the step it needs (distinct per step in the chain
and layered shapes, shared by the fan-out's middle). Each run salts its expressions, so no run
profits from the compiled-expression cache of the one before.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from workflows.validation import validate_definition

_salt = 0


def _step(i: int, needs: list[str]) -> dict[str, Any]:
    read = f"steps.{needs[0]}.output.n" if needs else "input.start"
    value = f"${{{{ {read} + {_salt} }}}}"
    return {
        "uses": "http",
        "needs": needs,
        "if": f"${{{{ input.flags.size() > {i % 7 + _salt} }}}}",
        "with": {"method": "POST", "url": f"https://svc.example/s/{i}", "json": {"n": value}},
    }


def chain(n: int) -> dict[str, Any]:
    """s0 <- s1 <- ... <- s(n-1): the deepest graph."""
    return _definition({f"s{i}": _step(i, [f"s{i - 1}"] if i else []) for i in range(n)})


def fan_out_in(n: int) -> dict[str, Any]:
    """One root, n-2 parallel steps that need it, one join that needs them all."""
    middle = [f"m{i}" for i in range(n - 2)]
    steps = {"root": _step(0, [])}
    steps.update({m: _step(i, ["root"]) for i, m in enumerate(middle)})
    steps["join"] = _step(n, middle)
    return _definition(steps)


def layered(n: int, width: int = 100) -> dict[str, Any]:
    """Layers of ``width`` steps; each step needs three steps of the layer before."""
    steps: dict[str, Any] = {}
    for i in range(n):
        layer, pos = divmod(i, width)
        needs = [f"l{layer - 1}_{(pos + k) % width}" for k in range(3)] if layer else []
        steps[f"l{layer}_{pos}"] = _step(i, needs)
    return _definition(steps)


def _definition(steps: dict[str, Any]) -> dict[str, Any]:
    last = next(reversed(steps))
    return {"name": "bench", "steps": steps, "output": f"${{{{ steps.{last}.output }}}}"}


def _median_seconds(build: Callable[[int], dict[str, Any]], n: int, runs: int) -> float:
    global _salt
    times = []
    for _ in range(runs):
        _salt += 1
        data = build(n)
        start = time.perf_counter()
        result = validate_definition(data, known_kinds={"http"})
        times.append(time.perf_counter() - start)
        if not result.ok:
            raise SystemExit(f"{build.__name__}: unexpected problems: {result.problems[:3]}")
    return statistics.median(times)


def main() -> None:
    """Print the median validation time of each shape."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for build in (chain, fan_out_in, layered):
        seconds = _median_seconds(build, args.steps, args.runs)
        print(f"{build.__name__:>11}: {seconds * 1000:7.1f} ms ({args.steps} steps, cold caches)")


if __name__ == "__main__":
    main()
