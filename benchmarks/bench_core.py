"""cloaca's core workloads, each next to its physical-limit baselines measured in the same run.

Workloads (issue 6 numbering):
  chain      (1) a 100-task sequential chain of no-op tasks, async and sync: ms per task
  fanout     (2) fan-out/fan-in 1 -> 1,000 -> 1, async and sync no-op tasks: tasks/s
  runs       (3) 1,000 single-task runs started together with `aexecute`: runs/s
  roundtrip  (4) a one-task `execute` round trip from sync code: median and p99 latency
  memory     (6) 100,000 single-task runs in one process, batches of 1,000: RSS start/10k/end
  (7) = workloads 1-4 on a SQLite file and on ":memory:" (--db).

Every repetition runs the engine once and then each baseline once (interleaved, so drift on
a noisy machine hits all of them alike); each figure is the median after a warm-up.
Baselines are those of baselines.py: plain asyncio (no persistence), and raw aiosqlite doing
the minimal writes with one transaction per change (`txn`) and with group commit (`grouped`).

The async workloads run on a runner bound to the benchmark's loop with `async with`, with
max_concurrent_tasks raised to 1,000 (the default of 4 would bound the fan-out and the 1,000
runs, and async no-op tasks hold no thread); the sync round trip uses the default config.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

import baselines as bl
from _common import fmt, log, machine_line, median, percentile, perf, rss_mib, table

import cloaca

CHAIN = 100
WIDTH = 1000
RUNS = 1000
# Targets: the highest cost ratio against raw aiosqlite with group commit in the same run.
CHAIN_TARGET = 1.25  # a persisted step at the limit's cost, give or take noise
FANOUT_TARGET = 2.0  # issue 19: ≤ 2x the limit's cost per task
RUNS_TARGET = 2.0  # issue 19: ≥ 0.5x the limit's runs/s
ROUND_TRIP_TARGET = 2.0
ASYNC_CONCURRENCY = 1000


# ---------------------------------------------------------------------------- workflows
def _noop(is_async: bool, name: str) -> Callable[..., Any]:
    if is_async:
        async def task(context: Any) -> None:
            return None
    else:
        def task(context: Any) -> None:  # type: ignore[misc]
            return None
    task.__name__ = name
    return task


def register_workflows() -> None:
    """bench_chain_{async,sync}, bench_fanout_{async,sync}, bench_single_{async,sync}."""
    for kind, is_async in (("async", True), ("sync", False)):
        with cloaca.WorkflowBuilder(f"bench_chain_{kind}"):
            for i in range(CHAIN):
                cloaca.task(id=f"t{i}", dependencies=[f"t{i - 1}"] if i else [])(_noop(is_async, f"t{i}"))
        with cloaca.WorkflowBuilder(f"bench_fanout_{kind}"):
            cloaca.task(id="root")(_noop(is_async, "root"))
            middles = [f"m{i}" for i in range(WIDTH)]
            for name in middles:
                cloaca.task(id=name, dependencies=["root"])(_noop(is_async, name))
            cloaca.task(id="sink", dependencies=middles)(_noop(is_async, "sink"))
        with cloaca.WorkflowBuilder(f"bench_single_{kind}"):
            cloaca.task(id="only")(_noop(is_async, "only"))


# ---------------------------------------------------------------------------- engine side
def _check(result: Any) -> None:
    if result.status != "Completed":
        raise RuntimeError(f"benchmark run ended {result.status}: {result.error_message}")


async def engine_chain(runner: cloaca.DefaultRunner, kind: str) -> float:
    t0 = perf()
    _check(await runner.aexecute(f"bench_chain_{kind}", cloaca.Context({})))
    return perf() - t0


async def engine_fanout(runner: cloaca.DefaultRunner, kind: str) -> float:
    t0 = perf()
    _check(await runner.aexecute(f"bench_fanout_{kind}", cloaca.Context({})))
    return perf() - t0


async def engine_runs(runner: cloaca.DefaultRunner, count: int = RUNS) -> float:
    t0 = perf()
    results = await asyncio.gather(
        *(runner.aexecute("bench_single_async", cloaca.Context({})) for _ in range(count))
    )
    elapsed = perf() - t0
    for result in results:
        _check(result)
    return elapsed


# ---------------------------------------------------------------------------- reporting
@dataclass
class Row:
    workload: str
    unit: str
    engine: float
    baselines: dict[str, float]
    higher_is_better: bool
    target: Optional[float] = None
    """Highest acceptable cost ratio against the grouped baseline of the same run (issue 19:
    targets are ratios to the physical limit, which moves with the machine; figures do not)."""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def cost_ratio(self, name: str) -> Optional[float]:
        """How many times the baseline's cost cloaca pays (time ratio, >1 = slower)."""
        base = self.baselines.get(name)
        if base is None or not self.engine or not base:
            return None
        return base / self.engine if self.higher_is_better else self.engine / base

    def target_text(self) -> str:
        return "—" if self.target is None else f"cost ≤ {self.target:.2f}×"

    def met(self) -> str:
        ratio = self.cost_ratio("grouped")
        if self.target is None or ratio is None:
            return ""
        return "yes" if ratio <= self.target else "**no**"


BASELINE_COLUMNS = (("asyncio", "asyncio (no persistence)"), ("txn", "aiosqlite, txn per change"),
                    ("grouped", "aiosqlite, grouped"))


def render(rows: list[Row]) -> str:
    header = ["workload", "unit", "cloaca"] + [title for _, title in BASELINE_COLUMNS]
    header += ["cloaca ÷ grouped (cost)", "target", "met"]
    lines = []
    for r in rows:
        ratio = r.cost_ratio("grouped")
        lines.append(
            [r.workload + (f" ({r.note})" if r.note else ""), r.unit, f"**{fmt(r.engine)}**"]
            + [fmt(r.baselines.get(name)) for name, _ in BASELINE_COLUMNS]
            + [("—" if ratio is None else f"{ratio:.2f}×"), r.target_text(), r.met()]
        )
    return table(header, lines)


# ---------------------------------------------------------------------------- measuring
async def interleave(
    reps: int, engine: Callable[[], Awaitable[float]], baselines: dict[str, Callable[[], Awaitable[float]]]
) -> tuple[list[float], dict[str, list[float]]]:
    """Warm every contender up once, then run engine, baseline, baseline… `reps` times."""
    await engine()
    for fn in baselines.values():
        await fn()
    engine_times: list[float] = []
    base_times: dict[str, list[float]] = {name: [] for name in baselines}
    for _ in range(reps):
        engine_times.append(await engine())
        for name, fn in baselines.items():
            base_times[name].append(await fn())
    return engine_times, base_times


@dataclass
class Plan:
    reps_chain: int
    reps_fanout: int
    reps_runs: int
    round_trips: int
    memory_runs: int


async def async_workloads(url: str, db_kind: str, only: set[str], plan: Plan) -> tuple[list[Row], float]:
    rows: list[Row] = []
    config = cloaca.DefaultRunnerConfig(max_concurrent_tasks=ASYNC_CONCURRENCY)
    t0 = perf()
    runner = cloaca.DefaultRunner.with_config(url, config)
    await runner.astart()
    startup = perf() - t0
    try:
        async with bl.Database(db_kind) as db:
            writers = {"asyncio": bl.NoWriter(), "txn": db.writer("txn"), "grouped": db.writer("grouped")}

            if "chain" in only:
                for kind in ("async", "sync"):
                    sync = kind == "sync"
                    e, b = await interleave(
                        plan.reps_chain, lambda: engine_chain(runner, kind),
                        {n: (lambda w=w: bl.chain(w, sync, CHAIN)) for n, w in writers.items()},
                    )
                    per_task = lambda s: s * 1000 / CHAIN  # noqa: E731
                    rows.append(Row(
                        f"(1) chain of {CHAIN}, {kind} no-op", "ms/task", per_task(median(e)),
                        {n: per_task(median(t)) for n, t in b.items()}, False, CHAIN_TARGET,
                    ))
                    log(f"core/{db_kind}: chain {kind} {fmt(per_task(median(e)))} ms/task")

            if "fanout" in only:
                for kind in ("async", "sync"):
                    sync = kind == "sync"
                    e, b = await interleave(
                        plan.reps_fanout, lambda: engine_fanout(runner, kind),
                        {n: (lambda w=w: bl.fanout(w, sync, WIDTH)) for n, w in writers.items()},
                    )
                    rate = lambda s: (WIDTH + 2) / s  # noqa: E731
                    rows.append(Row(
                        f"(2) fan-out 1→{WIDTH:,}→1, {kind} no-op", "tasks/s", rate(median(e)),
                        {n: rate(median(t)) for n, t in b.items()}, True,
                        FANOUT_TARGET if kind == "async" else None,
                    ))
                    log(f"core/{db_kind}: fanout {kind} {fmt(rate(median(e)))} tasks/s")

            if "runs" in only:
                e, b = await interleave(
                    plan.reps_runs, lambda: engine_runs(runner),
                    {n: (lambda w=w: bl.runs(w, RUNS)) for n, w in writers.items()},
                )
                rate = lambda s: RUNS / s  # noqa: E731
                rows.append(Row(
                    f"(3) {RUNS:,} single-task runs together (aexecute)", "runs/s", rate(median(e)),
                    {n: rate(median(t)) for n, t in b.items()}, True, RUNS_TARGET,
                ))
                log(f"core/{db_kind}: runs {fmt(rate(median(e)))} runs/s")
    finally:
        await runner.ashutdown()
    return rows, startup


def round_trip(url: str, db_kind: str, samples: int) -> list[Row]:
    """(4) `execute` from sync code, interleaved sample by sample with the baselines."""
    runner = cloaca.DefaultRunner(url)  # default config: the plain sync user
    contenders: dict[str, Callable[[], float]] = {}

    def engine_once() -> float:
        t0 = perf()
        _check(runner.execute("bench_single_async", cloaca.Context({})))
        return perf() - t0

    trips = {name: bl.RoundTrip(name, db_kind).__enter__() for name in ("asyncio", "txn", "grouped")}
    contenders["cloaca"] = engine_once
    for name, trip in trips.items():
        contenders[name] = trip.once
    samples_ms: dict[str, list[float]] = {name: [] for name in contenders}
    try:
        for _ in range(max(20, samples // 10)):  # warm-up
            for fn in contenders.values():
                fn()
        for _ in range(samples):
            for name, fn in contenders.items():
                samples_ms[name].append(fn() * 1000)
    finally:
        runner.shutdown()
        for trip in trips.values():
            trip.__exit__(None, None, None)
    rows = []
    for stat, fn, target in (("median", median, ROUND_TRIP_TARGET), ("p99", lambda v: percentile(v, 99), None)):
        rows.append(Row(
            f"(4) one-task `execute` round trip from sync code, {stat}", "ms",
            fn(samples_ms["cloaca"]), {n: fn(samples_ms[n]) for n in trips}, False, target,
            note="default config",
        ))
    log(f"core/{db_kind}: round trip median {fmt(rows[0].engine)} ms, p99 {fmt(rows[1].engine)} ms")
    return rows


async def memory_workload(url: str, total: int, batch: int = 1000) -> tuple[list[list[str]], str]:
    """(6) `total` single-task runs in batches of `batch` concurrent aexecute; RSS as it goes."""
    config = cloaca.DefaultRunnerConfig(max_concurrent_tasks=ASYNC_CONCURRENCY)
    marks = sorted({0, 1_000, 10_000, total // 2, total} & set(range(0, total + 1, batch)))
    rss_at: dict[int, float] = {}
    points: list[list[str]] = []
    last = [0, 0.0]  # runs done and elapsed seconds at the previous mark

    def mark(done: int, elapsed: float) -> None:
        gc.collect()
        rss = rss_at[done] = rss_mib()
        rate = fmt((done - last[0]) / (elapsed - last[1])) if elapsed > last[1] else "—"
        last[:] = [done, elapsed]
        points.append([f"{done:,}", fmt(rss), f"{len(gc.get_objects()):,}", rate])
        log(f"core/memory: {done:,} runs, RSS {fmt(rss)} MiB")

    async with cloaca.DefaultRunner.with_config(url, config) as runner:
        mark(0, 0.0)
        t0 = perf()
        done = 0
        while done < total:
            results = await asyncio.gather(
                *(runner.aexecute("bench_single_async", cloaca.Context({})) for _ in range(batch))
            )
            for result in results:
                _check(result)
            del results
            done += batch
            if done in marks:
                mark(done, perf() - t0)
    start, end = rss_at[0], rss_at[total]
    reference = rss_at.get(10_000, start)
    growth = end - reference
    verdict = (
        f"RSS {fmt(start)} MiB at start, {fmt(rss_at.get(10_000))} MiB after 10,000 runs, "
        f"{fmt(end)} MiB after {total:,}: {growth:+.1f} MiB from 10,000 runs to the end "
        f"({'flat' if abs(growth) <= 5 else '**growing**'}; target: flat; the first thousand runs "
        "fill SQLite's page cache, the thread pool and the interpreter's free lists)"
    )
    return points, verdict


# ---------------------------------------------------------------------------- main
NAMES = ("chain", "fanout", "runs", "roundtrip", "memory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, 20,000 runs for memory")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(NAMES)}")
    parser.add_argument("--db", choices=("file", "memory", "both"), default="both",
                        help="database(s) for workloads 1-4 (memory runs on a file always)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(","))) or set(NAMES)
    unknown = only - set(NAMES)
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(sorted(unknown))}; choose from {', '.join(NAMES)}")
    plan = (Plan(5, 3, 3, 300, 20_000) if args.quick else Plan(15, 9, 9, 2000, 100_000))

    register_workflows()
    tmp = tempfile.mkdtemp(prefix="cloaca-bench-")
    kinds = ("file", "memory") if args.db == "both" else (args.db,)
    summary: dict[str, Any] = {"mode": "quick" if args.quick else "full", "rows": [], "memory": None}
    print("## cloaca core workloads\n")
    print(f"Machine: {machine_line()}.  ")
    print(f"Mode: {'quick' if args.quick else 'full'}; medians of {plan.reps_chain} (chain), "
          f"{plan.reps_fanout} (fan-out), {plan.reps_runs} (runs) repetitions after a warm-up, "
          f"interleaved with the baselines; {plan.round_trips} round trips.  ")
    print(f"Async workloads: runner bound to the benchmark's loop (`async with`), "
          f"`max_concurrent_tasks={ASYNC_CONCURRENCY}`; other settings default.  ")
    print("Cost ratio = cloaca's time per unit of work ÷ the grouped raw-aiosqlite baseline's "
          "(1.00× = at the physical limit of a durable engine).\n")
    try:
        for kind in kinds:
            if not only & {"chain", "fanout", "runs", "roundtrip"}:
                break
            if kind == "file":
                url = "sqlite:///" + os.path.join(tmp, "bench.db")
                where = "a SQLite file in a temp dir on local disk (WAL, synchronous=NORMAL)"
                base_where = "baselines on a WAL file in a temp dir"
            else:
                url = ":memory:"
                where = "`\":memory:\"` (cloaca: a private temp file deleted at shutdown)"
                base_where = "baselines on SQLite's own `:memory:`"
            rows: list[Row] = []
            startup = None
            if only & {"chain", "fanout", "runs"}:
                rows, startup = asyncio.run(async_workloads(url, kind, only, plan))
            if "roundtrip" in only:
                rows += round_trip(url, kind, plan.round_trips)
            print(f"### (7) On {where}; {base_where}\n")
            print(render(rows))
            for r in rows:
                summary["rows"].append({
                    "workload": r.workload + (f" ({r.note})" if r.note else ""), "unit": r.unit,
                    "db": kind, "cloaca": r.engine, "baselines": r.baselines,
                    "cost_vs_grouped": r.cost_ratio("grouped"), "target": r.target_text(),
                    "met": r.met().strip("*"), "where": where,
                })
            if startup is not None:
                print(f"\nRunner start-up (`astart`, new database, migrations): {fmt(startup * 1000)} ms.")
            print()
            sys.stdout.flush()
        if "memory" in only:
            url = "sqlite:///" + os.path.join(tmp, "memory.db")
            points, verdict = asyncio.run(memory_workload(url, plan.memory_runs))
            print(f"### (6) {plan.memory_runs:,} single-task runs in one process (SQLite file, batches "
                  f"of 1,000 concurrent `aexecute`, max_concurrent_tasks={ASYNC_CONCURRENCY})\n")
            print(table(["runs done", "RSS MiB", "live GC objects", "runs/s since the previous row"], points))
            print(f"\n{verdict}.\n")
            summary["memory"] = {"runs": plan.memory_runs, "points": points, "verdict": verdict}
        if args.json:
            with open(args.json, "w") as out:
                json.dump(summary, out, indent=1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
