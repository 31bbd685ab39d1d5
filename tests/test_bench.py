"""The benchmarks still run: each script at a small size, as docs/benchmarks.md runs it.

The figures come from the full sizes (see docs/benchmarks.md); here only that every script
runs to its end, prints its table and exits 0.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SMALL = {
    # every shape on both dev servers, a few steps each; Prefect (a separate virtualenv that
    # takes minutes to install) only in the full bench
    "bench_engine": ["--small", "--repeat", "1", "--no-prefect"],
    "bench_fairness": ["--flood", "40", "--runs", "2"],
    "bench_local": ["--steps", "5", "--repeat", "1", "--checkpoint-steps", "0"],
    "bench_scale": ["--items", "300", "--steps", "30", "--big-items", "300", "--parked", "10",
                    "--timeout", "120", "--big-timeout", "120"],
    "bench_scaleout": ["--runs", "6", "--steps", "2", "--step-ms", "100", "--commands", "20",
                       "--concurrency", "5"],
    "bench_starter": ["--commands", "20", "--concurrency", "5", "--warm-up", "5",
                      "--databases", "sqlite"],
    "bench_validation": ["--steps", "200"],
}  # fmt: skip
"""Each script and the flags that make it small."""
PRINTS = {
    "bench_engine": "ratio",
    "bench_fairness": "ratio",
    "bench_local": "ms/step",
    "bench_scale": "events",
    "bench_scaleout": "no run lost",
    "bench_starter": "p99",
    "bench_validation": "ms",
}
"""A word each script's table has."""


@pytest.mark.parametrize("script", sorted(SMALL))
async def test_the_benchmarks_run_at_small_sizes(script: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        f"bench/{script}.py",
        *SMALL[script],
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    text = out.decode()
    assert proc.returncode == 0, text
    assert PRINTS[script] in text.lower(), text
