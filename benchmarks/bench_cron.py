"""Cost of cron scheduling: 1,000 schedules firing every second on one runner.

One DefaultRunner on a SQLite file, bound to this script's event loop, with
`max_concurrent_tasks` raised to 2,000 and 1,000 schedules `*/1 * * * * *` of a one-task
workflow whose task is an async no-op. After a warm-up, for `--seconds` of wall time:

  * scheduler wake-up lateness: for every slot the scheduler claims, `now - next_run_at`
    with `now` read when `fire_due()` starts (the scheduler's `lateness` list; all slots
    of one wake-up share it), median and p99;
  * run start lateness: when each run's task body starts, minus its `scheduled_time` (claim,
    hand-off and dispatch included: what a user sees), median, p99 and max;
  * runs/s: runs whose task body ran during the window, against the expected 1,000/s;
  * CPU seconds per wall second of the whole process (`time.process_time`, all threads);
  * slots claimed, and how many of them were recorded "skipped" (the scheduler fell more
    than a second behind) or fired twice (must be 0);
  * the cost of one `CronExpression.next_after` call for instants not seen before (no
    cache hit), for the benchmark's expression and a fixed-time one in New York.

With `--baseline FILE` (another version of cloaca/cron.py, e.g. from `git show
REV:cloaca/cron.py`), the same figures are measured in this process for both
implementations, rounds alternating, and shown side by side (medians over rounds).

    python benchmarks/bench_cron.py                  # 1,000 schedules for 30 s
    python benchmarks/bench_cron.py --seconds 10     # shorter
    python benchmarks/bench_cron.py --baseline /tmp/cron_old.py --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Iterator, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cloaca  # noqa: E402
from _common import fmt, log, machine_line, median, percentile, table  # noqa: E402

WORKFLOW = "bench_cron_noop"

RUNS = 0
STARTS: list[float] = []
"""For each run: when its task body started, minus its scheduled_time (seconds)."""


with cloaca.WorkflowBuilder(WORKFLOW) as _builder:

    @cloaca.task(id="noop")
    async def noop(context: cloaca.Context) -> cloaca.Context:
        global RUNS
        RUNS += 1
        STARTS.append(time.time() - datetime.fromisoformat(context.get("scheduled_time")).timestamp())
        return context


def load_cron_module(path: str) -> ModuleType:
    """A cron module (a version of cloaca/cron.py, which imports no cloaca code) from a file."""
    spec = importlib.util.spec_from_file_location("bench_cron_baseline", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def cron_implementation(runner: cloaca.DefaultRunner, module: Optional[ModuleType]) -> Iterator[ModuleType]:
    """The runner's scheduler parses expressions with `module`'s CronExpression (None: cloaca's).

    Yields the cron module in use.
    """
    scheduler = sys.modules[type(runner._cron).__module__]
    original = scheduler.CronExpression
    scheduler.CronExpression = module.CronExpression if module else original
    scheduler.parse_expression.cache_clear()
    try:
        yield module or sys.modules[original.__module__]
    finally:
        scheduler.CronExpression = original
        scheduler.parse_expression.cache_clear()


def next_after_cost(module: ModuleType, expression: str, zone: str, calls: int = 3000) -> float:
    """Seconds per `next_after` call, each from an instant not asked before."""
    cron = module.CronExpression(expression, zone)
    base = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=time.time_ns() % 10**7)
    start = time.perf_counter()
    for i in range(calls):
        cron.next_after(base + timedelta(seconds=97 * i))
    return (time.perf_counter() - start) / calls


async def measure(schedules: int, seconds: float, warmup: float, database: str,
                  module: Optional[ModuleType] = None) -> dict[str, float]:
    global RUNS
    config = cloaca.DefaultRunnerConfig(max_concurrent_tasks=2 * schedules)
    async with cloaca.DefaultRunner.with_config(f"sqlite:///{database}", config) as runner:
        with cron_implementation(runner, module) as used:
            assert runner._cron is not None
            runner._cron.lateness = []
            await asyncio.gather(*(
                runner.aregister_cron_workflow(WORKFLOW, "*/1 * * * * *", "UTC") for _ in range(schedules)
            ))
            await asyncio.sleep(warmup)

            runner._cron.lateness.clear()
            RUNS = 0
            STARTS.clear()
            start = time.time()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            await asyncio.sleep(seconds)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            runs, lateness, starts = RUNS, list(runner._cron.lateness), list(STARTS)

            for schedule in await runner.alist_cron_schedules(limit=schedules):
                await runner.aset_cron_schedule_enabled(schedule["id"], False)
            await asyncio.sleep(1.0)  # let the last runs end

    with sqlite3.connect(database) as conn:
        claimed, skipped, duplicates = conn.execute(
            """SELECT COUNT(*), SUM(outcome = 'skipped'),
                      COUNT(*) - COUNT(DISTINCT schedule_id || '@' || scheduled_time)
                 FROM schedule_executions WHERE kind = 'cron' AND scheduled_time >= ?
                  AND scheduled_time < ?""",
            (start, start + seconds),
        ).fetchone()
    return {
        "next_after_utc": next_after_cost(used, "*/1 * * * * *", "UTC"),
        "next_after_ny": next_after_cost(used, "30 2 * * *", "America/New_York"),
        "wall": wall, "cpu": cpu, "runs": runs, "claims": len(lateness),
        "late_p50": median(lateness) if lateness else float("nan"),
        "late_p99": percentile(lateness, 99), "late_max": max(lateness, default=float("nan")),
        "start_p50": median(starts) if starts else float("nan"),
        "start_p99": percentile(starts, 99), "start_max": max(starts, default=float("nan")),
        "slots": claimed, "skipped": skipped or 0, "duplicates": duplicates,
    }


def figures(f: dict[str, float]) -> dict[str, float]:
    """The reported figures of one measurement."""
    return {
        "late_p50": f["late_p50"] * 1000, "late_p99": f["late_p99"] * 1000,
        "start_p50": f["start_p50"] * 1000, "start_p99": f["start_p99"] * 1000,
        "start_max": f["start_max"] * 1000, "runs": f["runs"] / f["wall"],
        "claims": f["claims"] / f["wall"], "cpu": f["cpu"] / f["wall"],
        "slots": f["slots"], "skipped": f["skipped"], "duplicates": f["duplicates"],
        "next_after_utc": f["next_after_utc"] * 1e6, "next_after_ny": f["next_after_ny"] * 1e6,
    }


ROWS = [
    ("scheduler wake-up lateness (fire_due start - next_run_at), median", "late_p50", " ms"),
    ("scheduler wake-up lateness, p99", "late_p99", " ms"),
    ("run start lateness (task body start - scheduled_time), median", "start_p50", " ms"),
    ("run start lateness, p99", "start_p99", " ms"),
    ("run start lateness, max", "start_max", " ms"),
    ("runs/s", "runs", ""),
    ("slot claims/s", "claims", ""),
    ("CPU s per wall s", "cpu", ""),
    ("slots in window", "slots", ""),
    ("slots skipped", "skipped", ""),
    ("slots fired twice (must be 0)", "duplicates", ""),
    ("next_after, new instants, `*/1 * * * * *` UTC", "next_after_utc", " µs/call"),
    ("next_after, new instants, `30 2 * * *` New York", "next_after_ny", " µs/call"),
]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured wall time")
    parser.add_argument("--schedules", type=int, default=1000, help="schedules firing every second")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--baseline", help="another cloaca/cron.py to measure side by side")
    parser.add_argument("--rounds", type=int, default=1, help="measurements per implementation")
    args = parser.parse_args(argv)

    implementations: list[tuple[str, Optional[ModuleType]]] = [("cloaca.cron", None)]
    if args.baseline:
        implementations.append((f"baseline ({os.path.basename(args.baseline)})", load_cron_module(args.baseline)))
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in implementations}
    for round_number in range(args.rounds):
        for name, module in implementations[:: 1 if round_number % 2 == 0 else -1]:
            log(f"round {round_number + 1}/{args.rounds}: {name}")
            with tempfile.TemporaryDirectory(prefix="bench-cron-") as tmp:
                measured = asyncio.run(measure(
                    args.schedules, args.seconds, args.warmup, os.path.join(tmp, "cron.db"), module
                ))
            results[name].append(figures(measured))

    print(f"## Cron: {args.schedules:,} schedules `*/1 * * * * *`, {args.seconds:g} s on one runner\n")
    print(f"Machine: {machine_line()}\n")
    if args.rounds > 1:
        print(f"Median (range) over {args.rounds} rounds per implementation, rounds alternating.\n")
    print(f"Expected runs/s: {args.schedules:,}.\n")
    print(table(
        ["figure", *results],
        [[label, *(spread([r[key] for r in rounds]) + unit for rounds in results.values())]
         for label, key, unit in ROWS],
    ))


def spread(values: list[float]) -> str:
    """The median of the rounds, and their range when there are several."""
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(median(values))} ({fmt(min(values))}–{fmt(max(values))})"


if __name__ == "__main__":
    main(sys.argv[1:])
