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
time (median and p99, from the loop clock). The scenarios run `--rounds` times, one after
the other in each round (the machine's load drifts: a round's scenarios share it); each
figure is the median over rounds, and the ratio column is the median of each round's CPU
relative to that round's (a).

The pollers' phases are spread over the interval: bare ones explicitly, cloaca's because the
triggers are registered one after the other (each registration waits for its schedule row),
as happens when a runner starts with many triggers.

    python benchmarks/bench_triggers.py                 # 1,000 triggers, 100 ms, 10 s each, 3 rounds
    python benchmarks/bench_triggers.py --quick         # 3 s each
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
    parser.add_argument("--quick", action="store_true", help="3 s per scenario")
    parser.add_argument("--rounds", type=int, default=3, help="times every scenario runs")
    parser.add_argument("--triggers", type=int, default=1000, help="pollers per scenario")
    parser.add_argument("--interval-ms", type=int, default=100, help="poll interval")
    parser.add_argument("--blocking-ms", type=float, default=5.0, help="how long a call of (d) blocks")
    args = parser.parse_args(argv)
    n, interval_ms = args.triggers, args.interval_ms
    seconds = 3.0 if args.quick else args.seconds
    interval = interval_ms / 1000

    print(f"{n} pollers every {interval_ms} ms, {seconds:g} s per scenario, {args.rounds} rounds "
          f"(expected {n / interval:,.0f} polls/s); Python {sys.version.split()[0]}")
    scenarios = [
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
    ]
    rounds: list[list[Figures]] = []
    for i in range(args.rounds):
        print(f"  round {i + 1}: " + ", ".join(label.split(")")[0] + ")" for label, _ in scenarios), flush=True)
        rounds.append([run() for _, run in scenarios])
    report([label for label, _ in scenarios], rounds)


def report(labels: list[str], rounds: list[list[Figures]]) -> None:
    """Medians over rounds; CPU ratios per round (to that round's (a), or (c0) for (c))."""
    def med(values: list[float]) -> float:
        return statistics.median(values)

    def ratios(i: int, base: int) -> list[float]:
        return [r[i].cpu_per_second / r[base].cpu_per_second for r in rounds]

    header = f"{'scenario':<38} {'polls/s':>9} {'CPU s/s':>8} {'vs (a)':>7} {'late p50':>9} {'late p99':>9}"
    print()
    print(header)
    print("-" * len(header))
    for i, label in enumerate(labels):
        runs = [r[i] for r in rounds]
        print(f"{label:<38} {med([f.polls_per_second for f in runs]):>9,.0f} "
              f"{med([f.cpu_per_second for f in runs]):>8.3f} {med(ratios(i, 0)):>6.2f}x "
              f"{med([f.percentile_ms(0.5) for f in runs]):>7.2f}ms {med([f.percentile_ms(0.99) for f in runs]):>7.2f}ms")
    print("\n(b) vs (a), CPU, each round: " + ", ".join(f"{x:.2f}x" for x in ratios(1, 0))
          + f"; median {med(ratios(1, 0)):.2f}x (goal: <= 1.2x)")
    print(f"(c) vs (c0), both with thread hand-off: {med(ratios(3, 2)):.2f}x CPU")
    print("median lateness of all scenarios: "
          + ", ".join(f"{med([statistics.median(r[i].lateness) for r in rounds]) * 1000:.2f} ms"
                      for i in range(len(labels)) if all(r[i].lateness for r in rounds)))


if __name__ == "__main__":
    main(sys.argv[1:])
