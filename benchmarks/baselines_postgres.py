"""The physical limit on PostgreSQL: raw asyncpg doing the minimal writes of one-task runs.

    CLOACA_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
        python benchmarks/baselines_postgres.py [--runs 500] [--reps 5]

A one-task run's minimal durable writes, and nothing else: when it starts, its run row and
its task row (Running) are inserted; when the task has run, its task row goes Completed
with its output and the run row Completed with its final context. The task starts only once
the first write is committed; the run is done once the second is.

Two writers, each on a fresh schema of its own:

* ``pool``    — every change is one statement (one round trip, one transaction) on a
                connection of an asyncpg pool of `POOL_SIZE`: no grouping;
* ``grouped`` — group commit: the changes waiting when a connection is free go into one
                statement (data-modifying CTEs over unnest() arrays), so one round trip and
                one transaction (one WAL flush) per group, on up to `connections`
                connections at once (a group goes out whenever one of them is free).

bench_inflight.py and bench_postgres.py import this module and run the grouped writer next
to cloaca in the same run; run this file to print the writers alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from typing import Any, Optional, Sequence

import asyncpg

POOL_SIZE = 10
DEFAULT_CONNECTIONS = 2
"""Groups in flight at once by default: with one, the next group waits for the previous
one's round trip and WAL flush; with two, one fills while the other commits."""

SCHEMA = (
    """CREATE TABLE runs (
        id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL, input TEXT NOT NULL,
        output TEXT, started_at DOUBLE PRECISION NOT NULL, completed_at DOUBLE PRECISION)""",
    """CREATE TABLE tasks (
        run_id TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL, output TEXT,
        started_at DOUBLE PRECISION, completed_at DOUBLE PRECISION, PRIMARY KEY (run_id, name))""",
)
# One statement for any mix of changes: new runs $1 (ids) with their task rows $2..$4 (run
# id, name, status), task rows changed $5..$8 (run id, name, status, output), runs ended
# $9..$10 (id, output); $11 is the time. Any list may be empty.
WRITE_GROUP = """
    WITH new_runs AS (
        INSERT INTO runs (id, workflow, status, input, started_at)
        SELECT r.id, 'bench', 'Running', '{}', $11 FROM unnest($1::text[]) AS r (id)
    ), new_tasks AS (
        INSERT INTO tasks (run_id, name, status, started_at)
        SELECT n.run_id, n.name, n.status, CASE WHEN n.status = 'Running' THEN $11::float8 END
          FROM unnest($2::text[], $3::text[], $4::text[]) AS n (run_id, name, status)
    ), changed_tasks AS (
        UPDATE tasks t
           SET status = c.status, output = c.output,
               started_at = CASE WHEN c.status = 'Running' THEN $11::float8 ELSE t.started_at END,
               completed_at = CASE WHEN c.status = 'Completed' THEN $11::float8 END
          FROM unnest($5::text[], $6::text[], $7::text[], $8::text[]) AS c (run_id, name, status, output)
         WHERE t.run_id = c.run_id AND t.name = c.name
    )
    UPDATE runs r SET status = 'Completed', output = d.output, completed_at = $11
      FROM unnest($9::text[], $10::text[]) AS d (id, output)
     WHERE r.id = d.id
"""


class Change:
    """What one run writes at one point: created (with its task rows), task rows changed,
    and maybe its end."""

    __slots__ = ("run_id", "new_tasks", "changed_tasks", "ended")

    def __init__(self, run_id: str, new_tasks: Sequence[tuple[str, str]] = (),
                 changed_tasks: Sequence[tuple[str, str, Optional[str]]] = (), ended: bool = False) -> None:
        self.run_id = run_id
        self.new_tasks = new_tasks
        """(name, status) of each task row of a new run; empty for an existing run."""
        self.changed_tasks = changed_tasks
        """(name, status, output) of each task row changed."""
        self.ended = ended


class Writer:
    """Commits the changes of runs durably; `write` returns once its change is committed."""

    name = "?"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def write(self, change: Change) -> None:
        raise NotImplementedError


class PoolWriter(Writer):
    """One statement (one round trip, one transaction) per change, on a pooled connection."""

    name = "pool"

    async def write(self, change: Change) -> None:
        await self.pool.execute(WRITE_GROUP, *_arrays([change]))


class GroupWriter(Writer):
    """Group commit: the changes waiting when a connection is free go out as one statement."""

    name = "grouped"

    def __init__(self, pool: asyncpg.Pool, connections: int = DEFAULT_CONNECTIONS) -> None:
        super().__init__(pool)
        self.connections = connections
        self.pending: list[tuple[Change, asyncio.Future[None]]] = []
        self.in_flight = 0
        self.groups = 0
        self.changes = 0

    async def write(self, change: Change) -> None:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((change, future))
        if self.in_flight < self.connections:
            self.in_flight += 1
            asyncio.get_running_loop().create_task(self._flush())
        await future

    async def _flush(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                self.groups += 1
                self.changes += len(batch)
                try:
                    await self.pool.execute(WRITE_GROUP, *_arrays([c for c, _ in batch]))
                except BaseException as exc:
                    for _, future in batch:
                        future.set_exception(exc)
                    raise
                for _, future in batch:
                    future.set_result(None)
        finally:
            self.in_flight -= 1


def _arrays(changes: list[Change]) -> tuple[Any, ...]:
    new_runs: list[str] = []
    new_tasks: tuple[list[Any], ...] = ([], [], [])
    changed: tuple[list[Any], ...] = ([], [], [], [])
    ended: tuple[list[Any], ...] = ([], [])
    for c in changes:
        if c.new_tasks:
            new_runs.append(c.run_id)
        for name, status in c.new_tasks:
            for column, value in zip(new_tasks, (c.run_id, name, status)):
                column.append(value)
        for name, status, output in c.changed_tasks:
            for column, value in zip(changed, (c.run_id, name, status, output)):
                column.append(value)
        if c.ended:
            ended[0].append(c.run_id)
            ended[1].append(c.changed_tasks[0][2] if c.changed_tasks else "{}")
    return (new_runs, *new_tasks, *changed, *ended, time.time())


async def one_run(writer: Writer, tasks: int = 1) -> None:
    """A run of `tasks` async no-op tasks in a chain (each starts once the write of the
    previous one's end is committed)."""
    run_id = uuid.uuid4().hex
    names = [f"t{i}" for i in range(tasks)]
    await writer.write(Change(run_id, new_tasks=[(n, "Running" if i == 0 else "NotStarted")
                                                 for i, n in enumerate(names)]))
    for i, name in enumerate(names):
        await asyncio.sleep(0)  # the task body: an async no-op that yields once
        last = i == tasks - 1
        done = [(name, "Completed", "{}")] + ([] if last else [(names[i + 1], "Running", None)])
        await writer.write(Change(run_id, changed_tasks=done, ended=last))


HISTORY_RUNS = 10_000
"""Ended runs a fresh schema starts with, analyzed: the planner then finds rows by key
from the first statement on (on near-empty, never-analyzed tables it caches plans that
scan them whole, and keeps them as the tables grow)."""


async def create_schema(conn: asyncpg.Connection, schema: str) -> None:
    """`schema` with the baseline's tables, a history of ended runs, and statistics."""
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.execute(f'SET search_path TO "{schema}"')
    for statement in SCHEMA:
        await conn.execute(statement)
    ids = [f"history-{n}" for n in range(HISTORY_RUNS)]
    await conn.execute(WRITE_GROUP, ids, ids, ["t0"] * len(ids), ["Running"] * len(ids),
                       [], [], [], [], [], [], time.time())
    await conn.execute(WRITE_GROUP, [], [], [], [], ids, ["t0"] * len(ids),
                       ["Completed"] * len(ids), ["{}"] * len(ids), ids, ["{}"] * len(ids), time.time())
    await conn.execute("ANALYZE runs, tasks")


class Database:
    """A fresh schema for the baseline's tables, and a pool whose connections use it."""

    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self.pool_size = pool_size
        self.schema = f"cloaca_baseline_{uuid.uuid4().hex[:10]}"
        self.pool: Optional[asyncpg.Pool] = None

    async def __aenter__(self) -> "Database":
        conn = await asyncpg.connect(self.url)
        try:
            await create_schema(conn, self.schema)
        finally:
            await conn.close()
        self.pool = await asyncpg.create_pool(
            self.url, min_size=self.pool_size, max_size=self.pool_size,
            server_settings={"search_path": f'"{self.schema}"'},
        )
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.pool is not None:
            await self.pool.close()
        await drop_schema(self.url, self.schema)

    def writer(self, name: str, connections: int = DEFAULT_CONNECTIONS) -> Writer:
        assert self.pool is not None
        if name == "grouped":
            return GroupWriter(self.pool, connections)
        return PoolWriter(self.pool)


async def drop_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def batch(writer: Writer, count: int) -> float:
    """Runs/s of `count` one-task runs started together."""
    t0 = time.perf_counter()
    await asyncio.gather(*(one_run(writer) for _ in range(count)))
    return count / (time.perf_counter() - t0)


async def _main(url: str, runs: int, reps: int) -> None:
    variants = [("pool", 1), ("grouped", 1), ("grouped", 2), ("grouped", 4)]
    async with Database(url) as db:
        writers = [(f"{name} ({n} conn.)" if name == "grouped" else name, db.writer(name, n))
                   for name, n in variants]
        rates: dict[str, list[float]] = {label: [] for label, _ in writers}
        for _, writer in writers:
            await batch(writer, runs)  # warm-up: connections open, statements prepared
        for _ in range(reps):
            for label, writer in writers:
                rates[label].append(await batch(writer, runs))
    print(f"raw asyncpg, {runs} one-task runs started together, median of {reps} (interleaved)")
    for label, writer in writers:
        ordered = sorted(rates[label])
        extra = ""
        if isinstance(writer, GroupWriter):
            extra = f"  ({writer.changes / max(1, writer.groups):.0f} changes per group)"
        print(f"  {label:<20} {ordered[len(ordered) // 2]:>9,.0f} runs/s{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("CLOACA_TEST_POSTGRES_URL"))
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    if not args.url:
        parser.error("set CLOACA_TEST_POSTGRES_URL or pass --url")
    asyncio.run(_main(args.url, args.runs, args.reps))


if __name__ == "__main__":
    main()
