"""Runs in flight: runs/s and each run's latency with 100, 1,000 and 10,000 runs started together.

    python benchmarks/bench_inflight.py [--quick] [--sizes 100,1000,10000]

N one-task runs (async no-op) started together with `asyncio.gather(aexecute…)` on a SQLite
file, next to raw aiosqlite doing the minimal writes with group commit (the physical limit,
baselines.py) measured interleaved in the same run. Figures: runs/s and its ratio to the
limit (goal ≥ 0.5x at every size), and each run's latency — from the gather's start to the
run's end — as a share of the batch's wall time. When runs complete progressively, the
median is about half the wall time (runs end one by one, first started first done); near
1.0 means they all end together in a burst at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from typing import Any, Awaitable, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import baselines as bl  # noqa: E402
import cloaca  # noqa: E402
from _common import fmt, log, machine_line, median, percentile, perf, table  # noqa: E402
from bench_core import ASYNC_CONCURRENCY, register_workflows  # noqa: E402

GOAL = 0.5


async def timed_batch(count: int, one: Callable[[], Awaitable[Any]]) -> tuple[float, list[float]]:
    """(wall seconds, each run's seconds from the start) of `count` runs started together."""
    t0 = perf()
    ends: list[float] = []

    async def run() -> None:
        await one()
        ends.append(perf() - t0)

    await asyncio.gather(*(run() for _ in range(count)))
    return perf() - t0, ends


async def measure(count: int, reps: int, runner: cloaca.DefaultRunner, writer: bl.Writer) -> list[str]:
    async def engine_one() -> None:
        result = await runner.aexecute("bench_single_async", cloaca.Context({}))
        if result.status != "Completed":
            raise RuntimeError(f"benchmark run ended {result.status}: {result.error_message}")

    sides = {"cloaca": engine_one, "limit": lambda: bl.one_run(writer)}
    walls: dict[str, list[float]] = {k: [] for k in sides}
    p50s: dict[str, list[float]] = {k: [] for k in sides}  # latency ÷ wall
    p99s: dict[str, list[float]] = {k: [] for k in sides}
    for side, one in sides.items():  # warm-up
        await timed_batch(min(count, 1000), one)
    for _ in range(reps):
        for side, one in sides.items():
            wall, ends = await timed_batch(count, one)
            walls[side].append(wall)
            p50s[side].append(median(ends) / wall)
            p99s[side].append(percentile(ends, 99) / wall)
    rate = {side: count / median(w) for side, w in walls.items()}
    ratio = rate["cloaca"] / rate["limit"]
    log(f"inflight/{count}: cloaca {fmt(rate['cloaca'])} runs/s, limit {fmt(rate['limit'])} ({ratio:.2f}x)")
    return [
        f"{count:,}", f"**{fmt(rate['cloaca'])}**", fmt(rate["limit"]), f"{ratio:.2f}×",
        "yes" if ratio >= GOAL else "**no**",
        *(f"{median(p50s[side]):.2f} / {median(p99s[side]):.2f}" for side in sides),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--sizes", default="100,1000,10000")
    args = parser.parse_args()
    reps = 3 if args.quick else 7
    sizes = [int(s) for s in args.sizes.split(",")]
    register_workflows()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = cloaca.DefaultRunnerConfig(max_concurrent_tasks=ASYNC_CONCURRENCY)
        async with cloaca.DefaultRunner.with_config(os.path.join(tmp, "inflight.db"), config) as runner:
            async with bl.Database("file") as db:
                writer = db.writer("grouped")
                for count in sizes:
                    rows.append(await measure(count, reps, runner, writer))
    print("## bench_inflight.py: runs in flight\n")
    print(f"Machine: {machine_line()}.  ")
    print(f"One-task runs (async no-op) started together with `asyncio.gather(aexecute…)`, SQLite "
          f"file, `max_concurrent_tasks={ASYNC_CONCURRENCY}`; limit = raw aiosqlite doing the "
          f"minimal writes with group commit, interleaved in the same run; medians of {reps}. "
          f"Latency share = a run's latency (from the start of the batch) ÷ the batch's wall "
          f"time, median / p99: about 0.5 / 1.0 when runs complete one by one, near 1.0 / 1.0 "
          f"when they all end together.\n")
    print(table(["runs in flight", "cloaca runs/s", "limit runs/s", "cloaca ÷ limit",
                 f"≥ {GOAL}×", "cloaca latency share p50 / p99", "limit latency share p50 / p99"],
                rows))


if __name__ == "__main__":
    asyncio.run(main())
