"""Run control against `aexecute`, and the cost of tracing, measured side by side in one run.

  python benchmarks/bench_run_control.py [--reps 7] [--runs 1000] [--db memory|file]

Workloads (one-task runs of an async no-op task, on a runner bound to this loop):
  batch       RUNS runs started together: `aexecute` each, against `asubmit` then
              `aget_result` each (runs/s)
  round trip  one run at a time: `aexecute`, against `asubmit` + `aget_result` (median ms)
  tracing     a 100-task async chain and the batch of runs, with the OpenTelemetry SDK
              installed and spans going to a no-op exporter, against tracing off (what a
              process without the `otel` extra runs): cost per task in microseconds

Repetitions interleave the variants (so drift on a noisy machine hits them alike); each
figure is the median of the repetitions after a warm-up. The ratios are what count.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from typing import Any, Awaitable, Callable

from _common import fmt, machine_line, median, perf, table

import cloaca
from cloaca._engine import observe

CHAIN = 100


def register() -> None:
    with cloaca.WorkflowBuilder("rc_single"):

        @cloaca.task(id="only")
        async def only(context: Any) -> None:
            return None

    with cloaca.WorkflowBuilder("rc_chain"):
        for i in range(CHAIN):

            async def step(context: Any) -> None:
                return None

            cloaca.task(id=f"t{i}", dependencies=[f"t{i - 1}"] if i else [])(step)


async def batch_execute(runner: cloaca.DefaultRunner, runs: int) -> float:
    t0 = perf()
    results = await asyncio.gather(*(runner.aexecute("rc_single", cloaca.Context()) for _ in range(runs)))
    assert all(r.status == "Completed" for r in results)
    return runs / (perf() - t0)


async def batch_submit(runner: cloaca.DefaultRunner, runs: int) -> float:
    t0 = perf()
    ids = await asyncio.gather(*(runner.asubmit("rc_single", cloaca.Context()) for _ in range(runs)))
    results = await asyncio.gather(*(runner.aget_result(i) for i in ids))
    assert all(r.status == "Completed" for r in results)
    return runs / (perf() - t0)


async def trip_execute(runner: cloaca.DefaultRunner, samples: int) -> float:
    times = []
    for _ in range(samples):
        t0 = perf()
        await runner.aexecute("rc_single", cloaca.Context())
        times.append(perf() - t0)
    return 1000 * median(times)


async def trip_submit(runner: cloaca.DefaultRunner, samples: int) -> float:
    times = []
    for _ in range(samples):
        t0 = perf()
        await runner.aget_result(await runner.asubmit("rc_single", cloaca.Context()))
        times.append(perf() - t0)
    return 1000 * median(times)


async def chain(runner: cloaca.DefaultRunner) -> float:
    t0 = perf()
    result = await runner.aexecute("rc_chain", cloaca.Context())
    assert result.status == "Completed"
    return 1_000_000 * (perf() - t0) / CHAIN  # µs per task


def install_noop_tracing() -> None:
    """The OpenTelemetry SDK with every span exported to nowhere, and a metric reader."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class NoOpExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(NoOpExporter()))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


async def measure(variants: dict[str, Callable[[], Awaitable[float]]], reps: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(reps + 1):
        for name, run in variants.items():
            value = await run()
            if rep:  # the first repetition warms up
                samples[name].append(value)
    return {name: median(values) for name, values in samples.items()}


def tracing(enabled: bool) -> None:
    observe.TRACING = enabled and observe._trace is not None


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--db", choices=("memory", "file"), default="file")
    args = parser.parse_args()
    register()
    install_noop_tracing()
    with tempfile.TemporaryDirectory() as directory:
        url = ":memory:" if args.db == "memory" else f"sqlite:///{os.path.join(directory, 'rc.db')}"
        async with cloaca.DefaultRunner(url) as runner:
            tracing(False)
            control = await measure({
                "batch aexecute": lambda: batch_execute(runner, args.runs),
                "batch asubmit+aget_result": lambda: batch_submit(runner, args.runs),
                "trip aexecute": lambda: trip_execute(runner, args.samples),
                "trip asubmit+aget_result": lambda: trip_submit(runner, args.samples),
            }, args.reps)

            async def traced(run: Callable[[], Awaitable[float]], on: bool) -> float:
                tracing(on)
                try:
                    return await run()
                finally:
                    tracing(False)

            traces = await measure({
                "chain off": lambda: traced(lambda: chain(runner), False),
                "chain on": lambda: traced(lambda: chain(runner), True),
                "runs off": lambda: traced(lambda: batch_execute(runner, args.runs), False),
                "runs on": lambda: traced(lambda: batch_execute(runner, args.runs), True),
            }, args.reps)

    print(machine_line())
    print(f"SQLite {args.db}, {args.reps} repetitions (medians), {args.runs} runs per batch\n")
    print(table(["workload", "aexecute", "asubmit + aget_result", "ratio"], [
        ["batch, runs/s", fmt(control["batch aexecute"]), fmt(control["batch asubmit+aget_result"]),
         fmt(control["batch asubmit+aget_result"] / control["batch aexecute"])],
        ["round trip, median ms", fmt(control["trip aexecute"]), fmt(control["trip asubmit+aget_result"]),
         fmt(control["trip asubmit+aget_result"] / control["trip aexecute"])],
    ]))
    runs_off = 1_000_000 / traces["runs off"]  # µs per run (one task each)
    runs_on = 1_000_000 / traces["runs on"]
    print()
    print(table(["workload", "tracing off", "SDK, no-op exporter", "cost per task, µs", "ratio"], [
        ["100-task chain, µs/task", fmt(traces["chain off"]), fmt(traces["chain on"]),
         fmt(traces["chain on"] - traces["chain off"]), fmt(traces["chain on"] / traces["chain off"])],
        ["one-task runs, µs/run", fmt(runs_off), fmt(runs_on), fmt(runs_on - runs_off),
         fmt(runs_on / runs_off)],
    ]))


if __name__ == "__main__":
    asyncio.run(main())
