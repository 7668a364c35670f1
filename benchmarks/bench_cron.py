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
    than a second behind) or fired twice (must be 0).

    python benchmarks/bench_cron.py                  # 1,000 schedules for 30 s
    python benchmarks/bench_cron.py --seconds 10     # shorter
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cloaca  # noqa: E402
from _common import fmt, machine_line, median, percentile, table  # noqa: E402

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


async def measure(schedules: int, seconds: float, warmup: float, database: str) -> dict[str, float]:
    global RUNS
    config = cloaca.DefaultRunnerConfig(max_concurrent_tasks=2 * schedules)
    async with cloaca.DefaultRunner.with_config(f"sqlite:///{database}", config) as runner:
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
        "wall": wall, "cpu": cpu, "runs": runs, "claims": len(lateness),
        "late_p50": median(lateness) if lateness else float("nan"),
        "late_p99": percentile(lateness, 99), "late_max": max(lateness, default=float("nan")),
        "start_p50": median(starts) if starts else float("nan"),
        "start_p99": percentile(starts, 99), "start_max": max(starts, default=float("nan")),
        "slots": claimed, "skipped": skipped or 0, "duplicates": duplicates,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured wall time")
    parser.add_argument("--schedules", type=int, default=1000, help="schedules firing every second")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-cron-") as tmp:
        f = asyncio.run(measure(args.schedules, args.seconds, args.warmup, os.path.join(tmp, "cron.db")))

    expected = args.schedules
    print(f"## Cron: {args.schedules:,} schedules `*/1 * * * * *`, {args.seconds:g} s on one runner\n")
    print(f"Machine: {machine_line()}\n")
    print(table(
        ["figure", "value"],
        [
            ["scheduler wake-up lateness (fire_due start - next_run_at), median",
             f"{fmt(f['late_p50'] * 1000)} ms"],
            ["scheduler wake-up lateness, p99", f"{fmt(f['late_p99'] * 1000)} ms"],
            ["run start lateness (task body start - scheduled_time), median",
             f"{fmt(f['start_p50'] * 1000)} ms"],
            ["run start lateness, p99", f"{fmt(f['start_p99'] * 1000)} ms"],
            ["run start lateness, max", f"{fmt(f['start_max'] * 1000)} ms"],
            ["runs/s (expected)", f"{fmt(f['runs'] / f['wall'])} ({expected:,})"],
            ["slot claims/s", fmt(f["claims"] / f["wall"])],
            ["CPU s per wall s", fmt(f["cpu"] / f["wall"])],
            ["slots in window / skipped / fired twice",
             f"{f['slots']:,} / {f['skipped']:,} / {f['duplicates']:,}"],
        ],
    ))


if __name__ == "__main__":
    main(sys.argv[1:])
