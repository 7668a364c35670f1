"""Work shared by run or by task on SQLite: bench_core's workloads with the runner's store in
`WorkSharing.BY_RUN` and in `WorkSharing.BY_TASK`, in one process, interleaved (issue 17).

Workloads (bench_core's, its workflows and its engine-side timings):
  chain      a 100-task sequential chain of no-op tasks, async and sync: ms per task
  fanout     fan-out/fan-in 1 -> 1,000 -> 1, async and sync no-op tasks: tasks/s
  runs       1,000 single-task runs started together with `aexecute`: runs/s
  roundtrip  a one-task `execute` round trip from sync code (default config): median ms

Each mode has a SQLite file and a runner of its own, selected by URL (`sqlite:///path?sharing=run`
and `?sharing=task`; one file for both would mix the models); both runners are up for the
whole measurement, the idle one costing its timers only. Each round runs every workload
`reps` times in both modes, one after the other, the order of the modes alternating at each
repetition (and the round trips sample by sample), so that the noise of a shared machine hits
both alike. A figure is the median over every round's samples; the ratio BY_TASK ÷ BY_RUN is
given overall and per round (its spread is the noise), next to the ratio of the process's CPU
time per repetition, which other processes on a loaded machine disturb less than wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterator

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
    cpu: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    """Per mode, the process's CPU seconds of each repetition."""

    def value(self, mode: str) -> float:
        return median([v for round_ in self.samples[mode] for v in round_])

    def ratio(self) -> float:
        return self.value("task") / self.value("run")

    def round_ratios(self) -> list[float]:
        return [median(t) / median(r) for r, t in zip(self.samples["run"], self.samples["task"])]

    def cpu_ratio(self) -> float:
        """CPU time per repetition, BY_TASK ÷ BY_RUN (>1: by task costs more)."""
        return median(self.cpu["task"]) / median(self.cpu["run"])


async def timed(once: Callable[[], Awaitable[float]], cpu: list[float]) -> float:
    """`once()`'s wall seconds; its process CPU seconds appended to `cpu`."""
    c0 = time.process_time()
    wall = await once()
    cpu.append(time.process_time() - c0)
    return wall


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


def alternating(count: int) -> Iterator[tuple[str, ...]]:
    """The order of the modes for each of `count` repetitions: BY_RUN first, then BY_TASK first…"""
    for i in range(count):
        yield MODES if i % 2 == 0 else MODES[::-1]


async def measure_async(urls: dict[str, str], workloads: list[Workload], reps: dict[str, int], rounds: int) -> None:
    """The async workloads on two runners bound to this loop (one per mode), as bench_core
    runs them, repetitions interleaved."""
    config = cloaca.DefaultRunnerConfig(max_concurrent_tasks=ASYNC_CONCURRENCY)
    async with contextlib.AsyncExitStack() as stack:
        runners = {m: await stack.enter_async_context(cloaca.DefaultRunner.with_config(urls[m], config))
                   for m in MODES}
        for round_ in range(rounds):
            for workload in workloads:
                timers = {m: timer(workload, runners[m]) for m in MODES}
                figures: dict[str, list[float]] = {m: [] for m in MODES}
                for i, order in enumerate(alternating(1 + reps[workload.name.partition("_")[0]])):
                    for m in order:
                        cpu = workload.cpu[m] if i else []
                        figures[m].append(workload.figure(await timed(timers[m], cpu)))
                for m in MODES:
                    workload.samples[m].append(figures[m][1:])  # the first was the warm-up
                log(f"sharing: round {round_ + 1}: {workload.label}: " + ", ".join(
                    f"BY_{m.upper()} {fmt(median(figures[m][1:]))}" for m in MODES) + f" {workload.unit}")


def measure_round_trips(urls: dict[str, str], workload: Workload, samples: int, rounds: int) -> None:
    """Sync `execute` round trips (default config) on two runners, sample by sample."""
    runners = {m: cloaca.DefaultRunner(urls[m]) for m in MODES}
    try:
        def once(m: str, cpu: list[float]) -> float:
            t0, c0 = perf(), time.process_time()
            _check(runners[m].execute("bench_single_async", cloaca.Context({})))
            cpu.append(time.process_time() - c0)
            return (perf() - t0) * 1000

        for order in alternating(max(20, samples // 10)):  # warm-up
            for m in order:
                once(m, [])
        for round_ in range(rounds):
            figures: dict[str, list[float]] = {m: [] for m in MODES}
            for order in alternating(samples):
                for m in order:
                    figures[m].append(once(m, workload.cpu[m]))
            for m in MODES:
                workload.samples[m].append(figures[m])
            log(f"sharing: round {round_ + 1}: round trip median " + ", ".join(
                f"BY_{m.upper()} {fmt(median(figures[m]))}" for m in MODES) + " ms")
    finally:
        for runner in runners.values():
            runner.shutdown()


def render(workloads: list[Workload]) -> str:
    rows = []
    for w in workloads:
        if not w.samples["run"]:
            continue
        better = "higher" if w.higher_is_better else "lower"
        rows.append([
            w.label, f"{w.unit} ({better} is better)", fmt(w.value("run")), fmt(w.value("task")),
            f"**{w.ratio():.2f}**", ", ".join(f"{r:.2f}" for r in w.round_ratios()),
            f"{w.cpu_ratio():.2f}",
        ])
    return table(["workload", "unit", "BY_RUN", "BY_TASK", "BY_TASK ÷ BY_RUN", "per round",
                  "CPU time ÷"], rows)


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
        if workloads:
            asyncio.run(measure_async(urls, workloads, reps, args.rounds))
        if "roundtrip" in only:
            measure_round_trips(urls, trip, trips, args.rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("## Work shared by run or by task on SQLite\n")
    print(f"Machine: {machine_line()}.  ")
    print(f"{args.rounds} rounds; per round and mode {reps['chain']} (chain), {reps['fanout']} "
          f"(fan-out), {reps['runs']} (runs) repetitions after a warm-up and {trips} round trips, "
          "the two modes alternating at each; a SQLite file and a runner per mode, selected by URL "
          "(`?sharing=run|task`).  ")
    print(f"Async workloads: `max_concurrent_tasks={ASYNC_CONCURRENCY}`, runner bound to the "
          "benchmark's loop; round trip: default config.\n")
    print(render(workloads + ([trip] if "roundtrip" in only else [])))
    print()


if __name__ == "__main__":
    main()
