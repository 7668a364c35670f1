"""Runs in flight: runs/s and each run's latency with 100, 1,000 and 10,000 runs started together.

    python benchmarks/bench_inflight.py [--quick] [--sizes 100,1000,10000]
    CLOACA_TEST_POSTGRES_URL=postgresql://... python benchmarks/bench_inflight.py --store postgres [--sizes 500]

N one-task runs (async no-op) started together with `asyncio.gather(aexecute…)` on a SQLite
file, next to raw aiosqlite doing the minimal writes with group commit (the physical limit,
baselines.py) measured interleaved in the same run. With `--store postgres`: on a fresh
schema of that PostgreSQL database, next to raw asyncpg doing the minimal writes with group
commit (baselines_postgres.py, on a fresh schema of its own). Figures: runs/s and its ratio to the
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
import uuid
from typing import Any, Awaitable, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import baselines as bl  # noqa: E402
import baselines_postgres as bpg  # noqa: E402
import cloaca  # noqa: E402
from _common import fmt, log, machine_line, median, percentile, perf, table  # noqa: E402
from bench_core import ASYNC_CONCURRENCY, register_workflows  # noqa: E402

GOALS = {"sqlite": 0.5, "postgres": 0.25}
"""cloaca ÷ limit wanted at every size (issue 19)."""


async def timed_batch(count: int, one: Callable[[], Awaitable[Any]]) -> tuple[float, list[float]]:
    """(wall seconds, each run's seconds from the start) of `count` runs started together."""
    t0 = perf()
    ends: list[float] = []

    async def run() -> None:
        await one()
        ends.append(perf() - t0)

    await asyncio.gather(*(run() for _ in range(count)))
    return perf() - t0, ends


async def measure(
    count: int, reps: int, runner: cloaca.DefaultRunner, limit_one: Callable[[], Awaitable[Any]],
    goal: float,
) -> list[str]:
    async def engine_one() -> None:
        result = await runner.aexecute("bench_single_async", cloaca.Context({}))
        if result.status != "Completed":
            raise RuntimeError(f"benchmark run ended {result.status}: {result.error_message}")

    sides = {"cloaca": engine_one, "limit": limit_one}
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
        "yes" if ratio >= goal else "**no**",
        *(f"{median(p50s[side]):.2f} / {median(p99s[side]):.2f}" for side in sides),
    ]


async def measure_sqlite(sizes: list[int], reps: int) -> list[list[str]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = cloaca.DefaultRunnerConfig(max_concurrent_tasks=ASYNC_CONCURRENCY)
        async with cloaca.DefaultRunner.with_config(os.path.join(tmp, "inflight.db"), config) as runner:
            async with bl.Database("file") as db:
                writer = db.writer("grouped")
                for count in sizes:
                    rows.append(await measure(count, reps, runner, lambda: bl.one_run(writer), GOALS["sqlite"]))
    return rows


async def measure_postgres(url: str, sizes: list[int], reps: int) -> list[list[str]]:
    rows = []
    schema = f"cloaca_inflight_{uuid.uuid4().hex[:10]}"
    config = cloaca.DefaultRunnerConfig(max_concurrent_tasks=ASYNC_CONCURRENCY, enable_cron_scheduling=False)
    try:
        async with cloaca.DefaultRunner(url, _config=config, _schema=schema) as runner:
            async with bpg.Database(url) as db:
                writer = db.writer("grouped")
                for count in sizes:
                    rows.append(await measure(count, reps, runner, lambda: bpg.one_run(writer), GOALS["postgres"]))
    finally:
        await bpg.drop_schema(url, schema)
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--url", default=os.environ.get("CLOACA_TEST_POSTGRES_URL"))
    parser.add_argument("--sizes", default=None, help="default: 100,1000,10000 (SQLite), 500 (PostgreSQL)")
    args = parser.parse_args()
    reps = 3 if args.quick else 7
    postgres = args.store == "postgres"
    if postgres and not args.url:
        parser.error("set CLOACA_TEST_POSTGRES_URL or pass --url")
    sizes = [int(s) for s in (args.sizes or ("500" if postgres else "100,1000,10000")).split(",")]
    register_workflows()
    if postgres:
        rows = await measure_postgres(args.url, sizes, reps)
        where, limit = "PostgreSQL (a fresh schema)", (
            f"raw asyncpg doing the minimal writes with group commit (baselines_postgres.py, up to "
            f"{bpg.DEFAULT_CONNECTIONS} groups in flight)")
    else:
        rows = await measure_sqlite(sizes, reps)
        where, limit = "SQLite file", "raw aiosqlite doing the minimal writes with group commit"
    print(f"## bench_inflight.py: runs in flight, {'PostgreSQL' if postgres else 'SQLite'}\n")
    print(f"Machine: {machine_line()}.  ")
    print(f"One-task runs (async no-op) started together with `asyncio.gather(aexecute…)`, {where}, "
          f"`max_concurrent_tasks={ASYNC_CONCURRENCY}`; limit = {limit}, interleaved in the same "
          f"run; medians of {reps}. "
          f"Latency share = a run's latency (from the start of the batch) ÷ the batch's wall "
          f"time, median / p99: about 0.5 / 1.0 when runs complete one by one, near 1.0 / 1.0 "
          f"when they all end together.\n")
    print(table(["runs in flight", "cloaca runs/s", "limit runs/s", "cloaca ÷ limit",
                 f"≥ {GOALS[args.store]}×", "cloaca latency share p50 / p99", "limit latency share p50 / p99"],
                rows))


if __name__ == "__main__":
    asyncio.run(main())
