"""Work shared by run or by task on SQLite: bench_core's workloads with the runner's store in
`WorkSharing.BY_RUN` and in `WorkSharing.BY_TASK`, in one process, interleaved (issue 17).

Workloads (bench_core's, its workflows and its engine-side timings):
  chain      a 100-task sequential chain of no-op tasks, async and sync: ms per task
  fanout     fan-out/fan-in 1 -> 1,000 -> 1, async and sync no-op tasks: tasks/s
  runs       1,000 single-task runs started together with `aexecute`: runs/s
  roundtrip  a one-task `execute` round trip from sync code (default config): median ms

Each mode has a SQLite file of its own, selected by URL (`sqlite:///path?sharing=run` and
`?sharing=task`; one file for both would mix the models). Each round runs every workload in
both modes, the order of the modes alternating from round to round; within a round a mode's
runner is started, warmed up once per workload, measured `reps` times and shut down, so only
one runner is ever alive. A figure is the median over every round's samples; the ratio
BY_TASK ÷ BY_RUN is given overall and per round (its spread is the noise).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from _common import fmt, log, machine_line, median, perf, table
from bench_core import (
    ASYNC_CONCURRENCY, CHAIN, RUNS, WIDTH, _check, engine_chain, engine_fanout, engine_runs,
    register_workflows,
)

import cloaca

MODES = ("run", "task")
"""The values of the URL's `sharing` parameter, BY_RUN first."""
NAMES = ("chain", "fanout", "runs", "roundtrip")


@dataclass
class Workload:
    """One measured workload: how to time it once (seconds) and how that becomes its figure."""

    name: str
    label: str
    unit: str
    higher_is_better: bool
    figure: Callable[[float], float]
    samples: dict[str, list[list[float]]] = field(default_factory=lambda: {m: [] for m in MODES})
    """Per mode, per round, the figures of that round's repetitions."""

    def value(self, mode: str) -> float:
        return median([v for round_ in self.samples[mode] for v in round_])

    def ratio(self) -> float:
        return self.value("task") / self.value("run")

    def round_ratios(self) -> list[float]:
        return [median(t) / median(r) for r, t in zip(self.samples["run"], self.samples["task"])]


def async_workloads() -> list[Workload]:
    out = []
    for kind in ("async", "sync"):
        out.append(Workload(f"chain_{kind}", f"chain of {CHAIN}, {kind} no-op", "ms/task", False,
                            lambda s: s * 1000 / CHAIN))
    for kind in ("async", "sync"):
        out.append(Workload(f"fanout_{kind}", f"fan-out 1→{WIDTH:,}→1, {kind} no-op", "tasks/s",
                            True, lambda s: (WIDTH + 2) / s))
    out.append(Workload("runs", f"{RUNS:,} single-task runs together (aexecute)", "runs/s", True,
                        lambda s: RUNS / s))
    return out


def timer(workload: Workload, runner: cloaca.DefaultRunner) -> Callable[[], Awaitable[float]]:
    """The engine-side timing of bench_core for this workload."""
    kind = workload.name.rpartition("_")[2]
    if workload.name.startswith("chain"):
        return lambda: engine_chain(runner, kind)
    if workload.name.startswith("fanout"):
        return lambda: engine_fanout(runner, kind)
    return lambda: engine_runs(runner)


async def measure_async(url: str, mode: str, workloads: list[Workload], reps: dict[str, int]) -> None:
    """One round of the async workloads on a runner bound to this loop, as bench_core runs them."""
    config = cloaca.DefaultRunnerConfig(max_concurrent_tasks=ASYNC_CONCURRENCY)
    async with cloaca.DefaultRunner.with_config(url, config) as runner:
        for workload in workloads:
            once = timer(workload, runner)
            await once()  # warm-up
            figures = [workload.figure(await once()) for _ in range(reps[workload.name.partition("_")[0]])]
            workload.samples[mode].append(figures)
            log(f"sharing/{mode}: {workload.label}: {fmt(median(figures))} {workload.unit}")


def measure_round_trip(url: str, mode: str, workload: Workload, samples: int) -> None:
    """One round of sync `execute` round trips (default config), after a warm-up."""
    runner = cloaca.DefaultRunner(url)
    try:
        def once() -> float:
            t0 = perf()
            _check(runner.execute("bench_single_async", cloaca.Context({})))
            return perf() - t0

        for _ in range(max(20, samples // 10)):
            once()
        figures = [once() * 1000 for _ in range(samples)]
    finally:
        runner.shutdown()
    workload.samples[mode].append(figures)
    log(f"sharing/{mode}: round trip median {fmt(median(figures))} ms")


def render(workloads: list[Workload]) -> str:
    rows = []
    for w in workloads:
        if not w.samples["run"]:
            continue
        better = "higher" if w.higher_is_better else "lower"
        rows.append([
            w.label, f"{w.unit} ({better} is better)", fmt(w.value("run")), fmt(w.value("task")),
            f"**{w.ratio():.2f}**", ", ".join(f"{r:.2f}" for r in w.round_ratios()),
        ])
    return table(["workload", "unit", "BY_RUN", "BY_TASK", "BY_TASK ÷ BY_RUN", "per round"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions per round")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(NAMES)}")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(","))) or set(NAMES)
    if only - set(NAMES):
        parser.error(f"unknown workload(s) {', '.join(sorted(only - set(NAMES)))}; choose from {', '.join(NAMES)}")
    reps = {"chain": 3, "fanout": 2, "runs": 2} if args.quick else {"chain": 5, "fanout": 3, "runs": 3}
    trips = 100 if args.quick else 300

    register_workflows()
    workloads = [w for w in async_workloads() if w.name.partition("_")[0] in only]
    trip = Workload("roundtrip", "one-task `execute` round trip from sync code, median", "ms", False,
                    lambda ms: ms)
    tmp = tempfile.mkdtemp(prefix="cloaca-bench-sharing-")
    urls = {m: f"sqlite:///{os.path.join(tmp, f'by_{m}.db')}?sharing={m}" for m in MODES}
    try:
        for round_ in range(args.rounds):
            order = MODES if round_ % 2 == 0 else MODES[::-1]
            for mode in order:
                if workloads:
                    asyncio.run(measure_async(urls[mode], mode, workloads, reps))
                if "roundtrip" in only:
                    measure_round_trip(urls[mode], mode, trip, trips)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("## Work shared by run or by task on SQLite\n")
    print(f"Machine: {machine_line()}.  ")
    print(f"{args.rounds} rounds, modes alternating in order; per round and mode {reps['chain']} "
          f"(chain), {reps['fanout']} (fan-out), {reps['runs']} (runs) repetitions after a warm-up, "
          f"{trips} round trips; a SQLite file per mode, selected by URL (`?sharing=run|task`).  ")
    print(f"Async workloads: `max_concurrent_tasks={ASYNC_CONCURRENCY}`, runner bound to the "
          "benchmark's loop; round trip: default config.\n")
    print(render(workloads + ([trip] if "roundtrip" in only else [])))
    print()


if __name__ == "__main__":
    main()
