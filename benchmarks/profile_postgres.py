"""Where a run's time goes on PostgreSQL: statements and round trips, transactions, WAL
flushes, what the server's backends wait for, and the CPU of the runner and its backends.

    CLOACA_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
        python benchmarks/profile_postgres.py [--in-flight 500] [--batches 5] [--shared]

One runner on a database of its own (created, then dropped), so that the server's counters
(pg_stat_database, pg_stat_wal) count its work only. After a warm-up batch, `--batches`
batches of `--in-flight` one-task runs (async no-op) are started together; with `--shared`,
runs of a root and 8 leaves of 20 ms with 4 async slots, whose leaves are claimed from the
store. Printed per run: the statements the runner sent, by name (its connections are
wrapped: each call is one round trip), pool acquisitions, the server's transactions,
rows and WAL records, bytes, writes and flushes (fsync); then the mean number of the
runner's backends active in each wait event (sampled every 5 ms: "CPU" when not waiting),
and CPU per run of the runner process and of its backends.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import time
import uuid
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import asyncpg  # noqa: E402

import cloaca  # noqa: E402
from bench_postgres import cpu_seconds  # noqa: E402
from cloaca import Context, DefaultRunner, DefaultRunnerConfig  # noqa: E402
from cloaca._store import postgres_queries  # noqa: E402

SINGLE = "profile_pg_single"
SHARED = "profile_pg_fanout"
SAMPLE_SECONDS = 0.005
STATS_FLUSH_SECONDS = 11.0
"""Longer than a PostgreSQL backend (15) keeps its counters before it reports them when idle."""

with cloaca.WorkflowBuilder(SINGLE):

    @cloaca.task(id="only")
    async def _only(context: Context) -> Context:
        return context


with cloaca.WorkflowBuilder(SHARED):

    @cloaca.task(id="root")
    async def _root(context: Context) -> Context:
        return context

    for _i in range(8):

        def _make_leaf(i: int) -> None:
            @cloaca.task(id=f"leaf{i}", dependencies=["root"])
            async def _leaf(context: Context) -> Context:
                await asyncio.sleep(0.02)
                return context

        _make_leaf(_i)


class Statements:
    """Counts the statements sent on asyncpg connections, named after the store's queries."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.names: dict[str, str] = {}
        for name, value in vars(postgres_queries).items():
            if name.isupper() and isinstance(value, str):
                self.names[" ".join(value.split())] = name
            elif name.isupper() and isinstance(value, dict):
                for key, sql in value.items():
                    if isinstance(sql, str):
                        self.names[" ".join(sql.split())] = f"{name}[{key}]"
        self.enabled = True
        self.ignored: set[int] = set()
        """Connections not counted (the profiler's own), by id()."""

    def install(self) -> None:
        connection = asyncpg.connection.Connection
        for method in ("execute", "fetch", "fetchrow", "fetchval", "executemany"):
            setattr(connection, method, self._counting(getattr(connection, method)))
        pool = asyncpg.pool.Pool
        acquire = pool._acquire

        async def counting_acquire(pool_self: Any, timeout: Any) -> Any:
            if self.enabled:
                self.counts["(pool acquisitions)"] += 1
            return await acquire(pool_self, timeout)

        pool._acquire = counting_acquire

    def _counting(self, call: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(conn: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            if self.enabled and id(conn) not in self.ignored:
                name = self.names.get(" ".join(query.split())) or query.split()[0][:30]
                self.counts[name] += 1
                self.counts["(round trips)"] += 1
            return await call(conn, query, *args, **kwargs)

        return counted


SERVER_COUNTERS = """
    SELECT d.xact_commit AS transactions, d.tup_inserted AS rows_inserted,
           d.tup_updated AS rows_updated, w.wal_records, w.wal_bytes, w.wal_write, w.wal_sync
      FROM pg_stat_database d, pg_stat_wal w WHERE d.datname = current_database()
"""
WAITS = """
    SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity
     WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()
"""


async def sample_waits(conn: asyncpg.Connection, stop: asyncio.Event, waits: collections.Counter[str]) -> int:
    samples = 0
    while not stop.is_set():
        for row in await conn.fetch(WAITS):
            waits[row[0]] += 1
        samples += 1
        await asyncio.sleep(SAMPLE_SECONDS)
    return samples


async def profile(url: str, in_flight: int, batches: int, shared: bool, statements: Statements) -> None:
    workflow = SHARED if shared else SINGLE
    config = DefaultRunnerConfig(max_concurrent_tasks=64, enable_cron_scheduling=False,
                                 max_concurrent_async_tasks=4 if shared else 1000)
    async with DefaultRunner(url, _config=config) as runner:
        async def one() -> None:
            result = await runner.aexecute(workflow, Context({}))
            if result.status != "Completed":
                raise RuntimeError(f"a run ended {result.status}: {result.error_message}")

        await asyncio.gather(*(one() for _ in range(in_flight)))  # warm-up
        statements.enabled = False
        monitor, sampler = await asyncpg.connect(url), await asyncpg.connect(url)
        statements.ignored |= {id(monitor), id(sampler)}
        try:
            backends = [r[0] for r in await monitor.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid NOT IN (pg_backend_pid(), $1)", sampler.get_server_pid())]
            await asyncio.sleep(STATS_FLUSH_SECONDS)  # the warm-up's counters are in
            before = dict(await monitor.fetchrow(SERVER_COUNTERS))
            waits: collections.Counter[str] = collections.Counter()
            stop = asyncio.Event()
            sampling = asyncio.ensure_future(sample_waits(sampler, stop, waits))
            statements.counts.clear()
            statements.enabled = True
            cpu, server, t0 = time.process_time(), cpu_seconds(backends), time.perf_counter()
            for _ in range(batches):
                await asyncio.gather(*(one() for _ in range(in_flight)))
            wall = time.perf_counter() - t0
            cpu, server = time.process_time() - cpu, cpu_seconds(backends) - server
            statements.enabled = False
            stop.set()
            samples = await sampling
            await asyncio.sleep(STATS_FLUSH_SECONDS)
            after = dict(await monitor.fetchrow(SERVER_COUNTERS))
        finally:
            await monitor.close()
            await sampler.close()
    runs = in_flight * batches
    print(f"{runs:,} runs ({workflow}), {in_flight} in flight: {runs / wall:,.0f} runs/s; CPU per run: "
          f"runner {cpu / runs * 1e6:,.0f} µs ({cpu / wall:.0%} of a core), its backends "
          f"{server / runs * 1e6:,.0f} µs ({server / wall:.0%})")
    print("statements per run:")
    for name, count in statements.counts.most_common():
        print(f"  {count / runs:8.3f}  {name}")
    print("server, per run:")
    for name in before:
        print(f"  {float(after[name] - before[name]) / runs:10.3f}  {name}")
    print("the runner's backends by wait event (mean active over samples):")
    for name, count in waits.most_common():
        print(f"  {count / samples:8.2f}  {name}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("CLOACA_TEST_POSTGRES_URL"))
    parser.add_argument("--in-flight", type=int, default=500)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--shared", action="store_true", help="runs of a root and 8 leaves, 4 slots")
    args = parser.parse_args()
    if not args.url:
        parser.error("set CLOACA_TEST_POSTGRES_URL or pass --url")
    statements = Statements()
    statements.install()
    statements.enabled = False
    database = f"cloaca_profile_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(args.url)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        try:
            await profile(args.url.rsplit("/", 1)[0] + "/" + database, args.in_flight, args.batches,
                          args.shared, statements)
        finally:
            await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    finally:
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
