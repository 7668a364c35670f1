"""Cost of live reactors: events through a passthrough accumulator into a `when_any`
reactor with a one-node graph, next to a bare asyncio queue feeding a consumer task.

Measured in one process, one after the other, on a runner bound to this loop
(`async with DefaultRunner(":memory:")`, i.e. a private SQLite file: every fire writes its
firing row and the reactor's state):

  throughput  N events pushed back to back with `apush_event`; timed until the node has seen
              the last one. Bursts coalesce (a fire takes the latest value), so the node
              runs fewer times than there are events: both rates are reported.
  latency     one event at a time: from `apush_event` being called to the node starting
              (median, p99); the next event is pushed once the node has run.

The node is measured both ways the engine runs nodes: `async def` (awaited on the loop) and
plain `def` (in a worker thread). The baseline is the same two shapes with nothing but an
`asyncio.Queue` between the producer and a consumer task that calls the node directly.

    python benchmarks/bench_reactors.py                 # 20,000 events, 500 latency samples
    python benchmarks/bench_reactors.py --quick         # 2,000 events, 100 samples
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio.to_thread  # noqa: E402

import cloaca  # noqa: E402
from _common import fmt, machine_line, median, percentile  # noqa: E402

perf = time.perf_counter


class Probe:
    """What the node (or the baseline consumer) saw: the last value, when it started."""

    def __init__(self) -> None:
        self.calls = 0
        self.last: Any = None
        self.started_at = 0.0
        self.changed = asyncio.Event()

    def seen(self, value: Any) -> None:
        self.started_at = perf()
        self.calls += 1
        self.last = value

    def notify(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.call_soon_threadsafe(self.changed.set)


def declare(kind: str, probe: Probe, loop: asyncio.AbstractEventLoop) -> str:
    """A passthrough accumulator, a when_any reactor and a one-node graph; the accumulator."""
    source = f"bench_{kind}_events"
    cloaca.passthrough_accumulator(_identity(source))

    @cloaca.reactor(name=f"bench_{kind}_reactor", accumulators=[source])
    class Reactor:
        pass

    with cloaca.ComputationGraphBuilder(f"bench_{kind}_graph", graph={"node": {"inputs": [source]}},
                                        reactor=Reactor):
        if kind == "async":
            async def node(value):
                probe.seen(value)
                probe.changed.set()
                return None
        else:
            def node(value):
                probe.seen(value)
                probe.notify(loop)
                return None
        cloaca.node(node)
    return source


def _identity(name: str) -> Callable[[Any], Awaitable[Any]]:
    async def body(event: Any) -> Any:
        return event

    body.__name__ = name
    return body


async def wait_for(probe: Probe, predicate: Callable[[], bool]) -> None:
    while not predicate():
        probe.changed.clear()
        if predicate():
            return
        await probe.changed.wait()


async def measure(push: Callable[[Any], Awaitable[None]], probe: Probe, events: int,
                  samples: int) -> dict[str, float]:
    started = perf()
    for n in range(events):
        await push(n)
    await wait_for(probe, lambda: probe.last == events - 1)
    elapsed = perf() - started
    fires = probe.calls
    latencies = []
    for n in range(samples):
        value = events + n
        before = perf()
        await push(value)
        await wait_for(probe, lambda: probe.last == value)
        latencies.append(probe.started_at - before)
    return {"events_per_s": events / elapsed, "fires_per_s": fires / elapsed, "fires": fires,
            "median_ms": median(latencies) * 1000, "p99_ms": percentile(latencies, 99) * 1000}


async def baseline(kind: str, events: int, samples: int) -> dict[str, float]:
    """Producer -> asyncio.Queue -> consumer task calling the node (in a thread if sync)."""
    probe = Probe()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(256)

    def sync_node(value: Any) -> None:
        probe.seen(value)
        probe.notify(loop)

    async def consume() -> None:
        while True:
            value = await queue.get()
            if kind == "async":
                probe.seen(value)
                probe.changed.set()
            else:
                await anyio.to_thread.run_sync(sync_node, value)

    consumer = loop.create_task(consume())
    try:
        return await measure(queue.put, probe, events, samples)
    finally:
        consumer.cancel()


async def cloaca_reactor(kind: str, events: int, samples: int) -> dict[str, float]:
    probe = Probe()
    source = declare(kind, probe, asyncio.get_running_loop())
    config = cloaca.DefaultRunnerConfig(reactor_poll_interval_seconds=3600)
    async with cloaca.DefaultRunner.with_config(":memory:", config) as runner:
        return await measure(lambda event: runner.apush_event(source, event), probe, events, samples)


async def main_async(events: int, samples: int) -> None:
    print("## Reactors: apush_event -> passthrough -> when_any reactor -> one-node graph\n")
    print(f"{events:,} events back to back; {samples} latency samples one at a time. "
          f"Machine: {machine_line()}\n")
    print("| path | node | events/s | node runs/s (runs) | latency median | latency p99 | "
          "events/s vs baseline |")
    print("|---|---|---|---|---|---|---|")
    for kind in ("async", "sync"):
        base = await baseline(kind, events, samples)
        live = await cloaca_reactor(kind, events, samples)
        for name, figures in (("asyncio.Queue -> consumer (baseline)", base), ("cloaca reactor", live)):
            ratio = figures["events_per_s"] / base["events_per_s"]
            print(f"| {name} | {kind} | {fmt(figures['events_per_s'])} | "
                  f"{fmt(figures['fires_per_s'])} ({figures['fires']:,}) | "
                  f"{fmt(figures['median_ms'])} ms | {fmt(figures['p99_ms'])} ms | {ratio:.3g}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="2,000 events, 100 samples")
    args = parser.parse_args()
    if args.quick:
        args.events, args.samples = 2_000, 100
    asyncio.run(main_async(args.events, args.samples))


if __name__ == "__main__":
    main()
