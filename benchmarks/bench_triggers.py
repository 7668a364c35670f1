"""Cost of polling triggers: cloaca's trigger poller next to plain asyncio pollers.

Measured in one process, one scenario after the other, each for the same wall time:

  (a) bare asyncio: N tasks, each sleeping its interval (drift-free: next due = previous
      due + interval) and awaiting a cheap async condition;
  (b) cloaca: N `@cloaca.trigger`s with the same cheap async condition, polled by a
      DefaultRunner(":memory:") running in its own thread;
  (c) cloaca: N triggers with a cheap *sync* condition (called in cloaca's trigger-poll
      threads, which keep the schedule themselves), next to (c0) bare asyncio handing the
      same condition from the loop to a worker thread through anyio, thread limit 64 (what
      cloaca did before: the price of a hand-off per poll);
  (d) cloaca: N sync triggers whose calls block `--blocking-ms` (5 ms: 1,000 triggers every
      100 ms then overlap 50 calls, within the default `max_concurrent_trigger_polls` of 64):
      whether the poll threads keep the schedule when one thread cannot.

Figures: polls per second, CPU seconds per wall second of the whole process
(`time.process_time`, all threads), and how late the pollers woke up relative to their due
time (median and p99, from the loop clock). The ratio column is CPU relative to (a).

The pollers' phases are spread over the interval: bare ones explicitly, cloaca's because the
triggers are registered one after the other (each registration waits for its schedule row),
as happens when a runner starts with many triggers.

    python benchmarks/bench_triggers.py                 # 1,000 triggers, 100 ms, 10 s each
    python benchmarks/bench_triggers.py --seconds 3     # shorter
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import anyio
import anyio.to_thread

import cloaca
from cloaca._registry import REGISTRY

WORKFLOW = "bench_triggers_never_fired"
SYNC_THREAD_LIMIT = 64  # cloaca's default max_concurrent_trigger_polls


@dataclass
class Figures:
    name: str
    wall: float
    cpu: float
    polls: int
    lateness: list[float]

    @property
    def cpu_per_second(self) -> float:
        return self.cpu / self.wall

    @property
    def polls_per_second(self) -> float:
        return self.polls / self.wall

    def percentile_ms(self, q: float) -> float:
        if not self.lateness:
            return float("nan")
        ordered = sorted(self.lateness)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# ====================================================================== conditions
async def cheap_async_condition() -> bool:
    return False


def cheap_sync_condition() -> bool:
    return False


async def cheap_async_trigger() -> cloaca.TriggerResult:
    return cloaca.TriggerResult.skip()


def cheap_sync_trigger() -> cloaca.TriggerResult:
    return cloaca.TriggerResult.skip()


def blocking_sync_trigger(seconds: float) -> Callable[[], cloaca.TriggerResult]:
    def blocking_sync_trigger() -> cloaca.TriggerResult:
        time.sleep(seconds)  # a network round trip, say
        return cloaca.TriggerResult.skip()

    return blocking_sync_trigger


# ====================================================================== (a), (c0) bare asyncio
async def _bare_poller(
    interval: float, phase: float, check: Callable[[], Awaitable[bool]], lateness: list[float]
) -> None:
    loop = asyncio.get_running_loop()
    due = loop.time() + interval + phase
    while True:
        await asyncio.sleep(due - loop.time())
        now = loop.time()
        lateness.append(now - due)
        due += interval
        if due <= now:
            due = now + interval
        await check()


def bare_asyncio(name: str, count: int, interval: float, seconds: float, threaded: bool) -> Figures:
    async def main() -> Figures:
        lateness: list[float] = []
        if threaded:
            limiter = anyio.CapacityLimiter(SYNC_THREAD_LIMIT)

            async def check() -> bool:
                return await anyio.to_thread.run_sync(cheap_sync_condition, limiter=limiter)
        else:
            check = cheap_async_condition
        tasks = [
            asyncio.create_task(_bare_poller(interval, interval * i / count, check, lateness))
            for i in range(count)
        ]
        await asyncio.sleep(3 * interval)  # every poller in its steady state
        lateness.clear()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.sleep(seconds)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        sample = list(lateness)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return Figures(name, wall, cpu, len(sample), sample)

    return anyio.run(main, backend="asyncio")


# ====================================================================== (b), (c) cloaca
def cloaca_triggers(name: str, count: int, interval_ms: int, seconds: float, function) -> Figures:
    runner = cloaca.DefaultRunner(":memory:")
    names = [f"bench_{function.__name__}_{i}" for i in range(count)]
    try:
        poller = runner._poller
        poller.lateness = []  # read by each poller when it starts: switch on before registering
        for trigger_name in names:
            cloaca.trigger(workflow=WORKFLOW, name=trigger_name, poll_interval=f"{interval_ms}ms")(function)
        time.sleep(3 * interval_ms / 1000)  # every poller in its steady state
        poller.lateness.clear()
        polls0 = poller.polls
        wall0, cpu0 = time.perf_counter(), time.process_time()
        time.sleep(seconds)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        polls = poller.polls - polls0
        sample = list(poller.lateness)
    finally:
        runner.shutdown()
        for trigger_name in names:
            REGISTRY.remove_trigger(trigger_name)
    return Figures(name, wall, cpu, polls, sample)


# ====================================================================== report
def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured wall time per scenario")
    parser.add_argument("--triggers", type=int, default=1000, help="pollers per scenario")
    parser.add_argument("--interval-ms", type=int, default=100, help="poll interval")
    parser.add_argument("--blocking-ms", type=float, default=5.0, help="how long a call of (d) blocks")
    args = parser.parse_args(argv)
    n, interval_ms, seconds = args.triggers, args.interval_ms, args.seconds
    interval = interval_ms / 1000

    print(f"{n} pollers every {interval_ms} ms, {seconds:g} s per scenario "
          f"(expected {n / interval:,.0f} polls/s); Python {sys.version.split()[0]}")
    results = []
    for label, run in [
        ("(a) bare asyncio, async condition",
         lambda: bare_asyncio("", n, interval, seconds, threaded=False)),
        ("(b) cloaca, async triggers",
         lambda: cloaca_triggers("", n, interval_ms, seconds, cheap_async_trigger)),
        ("(c0) bare asyncio + thread hand-off",
         lambda: bare_asyncio("", n, interval, seconds, threaded=True)),
        ("(c) cloaca, sync triggers",
         lambda: cloaca_triggers("", n, interval_ms, seconds, cheap_sync_trigger)),
        (f"(d) cloaca, sync, calls block {args.blocking_ms:g} ms",
         lambda: cloaca_triggers("", n, interval_ms, seconds, blocking_sync_trigger(args.blocking_ms / 1000))),
    ]:
        print(f"  running {label} ...", flush=True)
        figures = run()
        figures.name = label
        results.append(figures)

    base = results[0].cpu_per_second
    header = f"{'scenario':<38} {'polls/s':>9} {'CPU s/s':>8} {'vs (a)':>7} {'late p50':>9} {'late p99':>9}"
    print()
    print(header)
    print("-" * len(header))
    for f in results:
        print(f"{f.name:<38} {f.polls_per_second:>9,.0f} {f.cpu_per_second:>8.3f} "
              f"{f.cpu_per_second / base:>6.2f}x {f.percentile_ms(0.5):>7.2f}ms {f.percentile_ms(0.99):>7.2f}ms")
    sync_base = results[2].cpu_per_second
    print(f"\n(c) vs (c0), both with thread hand-off: {results[3].cpu_per_second / sync_base:.2f}x CPU")
    print("median lateness of all scenarios: "
          + ", ".join(f"{statistics.median(f.lateness) * 1000:.2f} ms" for f in results if f.lateness))


if __name__ == "__main__":
    main(sys.argv[1:])
