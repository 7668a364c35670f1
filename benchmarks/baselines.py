"""Physical-limit baselines for the engine workloads, measured in the engine's own process.

Two kinds of floor:

* plain asyncio, no persistence: a task body is an awaited no-op coroutine (or, for the
  "sync" variants, a no-op function run in a worker thread with `anyio.to_thread.run_sync`,
  which is what any loop-friendly engine must do with sync code);
* raw aiosqlite doing the minimal writes a durable engine needs, and nothing else:
  per run one INSERT when it starts; per task one INSERT of its completed row (with its
  output context) when it ends; the run's final UPDATE travels with its last task's row.
  A task starts only once the write it depends on is committed. Three ways to write:

  - ``txn``     one transaction per change, with aiosqlite's ordinary API
                (BEGIN IMMEDIATE / statements / COMMIT, each a thread hop, under a lock);
  - ``hop``     one transaction per change, run as one call in aiosqlite's thread
                (``conn._execute(fn)``), no grouping;
  - ``grouped`` group commit: the changes that are waiting when the writer is free go into
                one BEGIN IMMEDIATE … COMMIT, one thread hop per group (as cloaca's store does).

The SQLite database is a file in a temp dir (WAL, synchronous=NORMAL), or SQLite's own
":memory:". Run this file to print the baselines alone; bench_core.py imports it and runs
them interleaved with the engine's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from typing import Any, Awaitable, Callable, Optional, Sequence

import aiosqlite
import anyio.to_thread

from _common import fmt, log, machine_line, median, percentile, perf, table

Change = Sequence[tuple[str, tuple[Any, ...]]]

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL,
        input TEXT NOT NULL, output TEXT, started_at REAL NOT NULL, completed_at REAL)""",
    """CREATE TABLE IF NOT EXISTS tasks (
        run_id TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL, output TEXT,
        completed_at REAL, PRIMARY KEY (run_id, name)) WITHOUT ROWID""",
)
INSERT_RUN = "INSERT INTO runs (id, workflow, status, input, started_at) VALUES (?, ?, 'Running', ?, ?)"
INSERT_TASK = "INSERT INTO tasks (run_id, name, status, output, completed_at) VALUES (?, ?, 'Completed', ?, ?)"
FINISH_RUN = "UPDATE runs SET status = 'Completed', output = ?, completed_at = ? WHERE id = ?"

WRITERS = ("txn", "hop", "grouped")
EXPERIMENTAL = ("inline", "inline-grouped")


# ---------------------------------------------------------------------------- task bodies
async def _async_noop() -> None:
    return None


def _sync_noop() -> None:
    return None


async def body(sync: bool) -> None:
    """Run one no-op task body: awaited on the loop, or (sync) in a worker thread."""
    if sync:
        await anyio.to_thread.run_sync(_sync_noop)
    else:
        await _async_noop()


# ---------------------------------------------------------------------------- writers
class Writer:
    """Commits a change (a few statements) durably; returns once it is committed."""

    name = "?"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def write(self, change: Change) -> None:
        raise NotImplementedError


class NoWriter(Writer):
    """Plain asyncio: nothing is persisted."""

    name = "asyncio"

    def __init__(self) -> None:  # noqa: D107 - no connection
        pass

    async def write(self, change: Change) -> None:
        return None


class TxnWriter(Writer):
    """One transaction per change through aiosqlite's public API: a thread hop per statement."""

    name = "txn"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        super().__init__(conn)
        self.lock = asyncio.Lock()

    async def write(self, change: Change) -> None:
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            for sql, params in change:
                await self.conn.execute(sql, params)
            await self.conn.execute("COMMIT")


def _apply_one(conn: sqlite3.Connection, change: Change) -> None:
    cur = conn.cursor()
    cur.execute("BEGIN IMMEDIATE")
    for sql, params in change:
        cur.execute(sql, params)
    cur.execute("COMMIT")


def _apply_group(conn: sqlite3.Connection, changes: list[Change]) -> None:
    cur = conn.cursor()
    cur.execute("BEGIN IMMEDIATE")
    for change in changes:
        for sql, params in change:
            cur.execute(sql, params)
    cur.execute("COMMIT")


class HopWriter(Writer):
    """One transaction per change, run as one call in aiosqlite's thread; no grouping."""

    name = "hop"

    async def write(self, change: Change) -> None:
        await self.conn._execute(_apply_one, self.conn._conn, change)


class InlineWriter(Writer):
    """Experimental: the transaction runs on the loop thread itself (no thread hop at all).

    Not a safe design as it stands (a busy database would block the loop for up to the busy
    timeout); it is here to measure what the thread hop costs. Standalone baselines only.
    """

    name = "inline"

    def __init__(self, path: str) -> None:  # its own connection, made on the loop thread
        self.sync_conn = sqlite3.connect(path, isolation_level=None)
        self.sync_conn.execute("PRAGMA journal_mode = WAL")
        self.sync_conn.execute("PRAGMA synchronous = NORMAL")
        for statement in SCHEMA:
            self.sync_conn.execute(statement)

    async def write(self, change: Change) -> None:
        _apply_one(self.sync_conn, change)


class InlineGroupWriter(InlineWriter):
    """Experimental: group commit on the loop thread — what is waiting when the loop comes
    round (`call_soon`) goes into one transaction, run on the loop thread. Standalone only."""

    name = "inline-grouped"

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.pending: list[tuple[Change, asyncio.Future[None]]] = []
        self.scheduled = False

    async def write(self, change: Change) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self.pending.append((change, future))
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self._flush)
        await future

    def _flush(self) -> None:
        batch, self.pending, self.scheduled = self.pending, [], False
        _apply_group(self.sync_conn, [c for c, _ in batch])
        for _, future in batch:
            future.set_result(None)


class GroupWriter(Writer):
    """Group commit: what queued while the writer was busy goes into one transaction."""

    name = "grouped"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        super().__init__(conn)
        self.pending: list[tuple[Change, asyncio.Future[None]]] = []
        self.flusher: Optional[asyncio.Task[None]] = None
        self.groups = 0
        self.changes = 0

    async def write(self, change: Change) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self.pending.append((change, future))
        if self.flusher is None:
            self.flusher = loop.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                self.groups += 1
                self.changes += len(batch)
                try:
                    await self.conn._execute(_apply_group, self.conn._conn, [c for c, _ in batch])
                except BaseException as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    raise
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
        finally:
            self.flusher = None


class Database:
    """A SQLite database for the baselines: a WAL file in a temp dir, or ':memory:'."""

    def __init__(self, kind: str = "file") -> None:
        self.kind = kind
        self.dir: Optional[str] = None
        self.path = ":memory:"
        self.conn: Optional[aiosqlite.Connection] = None

    async def __aenter__(self) -> "Database":
        if self.kind == "memory":
            path = ":memory:"
        else:
            self.dir = tempfile.mkdtemp(prefix="cloaca-baseline-")
            path = os.path.join(self.dir, "baseline.db")
        self.path = path
        self.conn = await aiosqlite.connect(path, isolation_level=None)
        await self.conn.execute("PRAGMA journal_mode = WAL")
        await self.conn.execute("PRAGMA synchronous = NORMAL")
        for statement in SCHEMA:
            await self.conn.execute(statement)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.conn is not None:
            await self.conn.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def writer(self, name: str) -> Writer:
        assert self.conn is not None
        if name == "inline":
            return InlineWriter(self.path)
        if name == "inline-grouped":
            return InlineGroupWriter(self.path)
        kinds = {"txn": TxnWriter, "hop": HopWriter, "grouped": GroupWriter}
        return kinds[name](self.conn)


# ---------------------------------------------------------------------------- workloads
def _start(run_id: str, workflow: str) -> Change:
    return [(INSERT_RUN, (run_id, workflow, "{}", time.time()))]


def _done(run_id: str, task: str, last: bool) -> Change:
    now = time.time()
    change: list[tuple[str, tuple[Any, ...]]] = [(INSERT_TASK, (run_id, task, "{}", now))]
    if last:
        change.append((FINISH_RUN, ("{}", now, run_id)))
    return change


async def chain(writer: Writer, sync: bool, n: int = 100) -> float:
    """A run of `n` tasks in sequence; seconds."""
    t0 = perf()
    run_id = uuid.uuid4().hex
    await writer.write(_start(run_id, "chain"))
    for i in range(n):
        await body(sync)
        await writer.write(_done(run_id, f"t{i}", i == n - 1))
    return perf() - t0


async def fanout(writer: Writer, sync: bool, width: int = 1000) -> float:
    """A run 1 -> `width` -> 1; seconds."""
    t0 = perf()
    run_id = uuid.uuid4().hex
    await writer.write(_start(run_id, "fanout"))
    await body(sync)
    await writer.write(_done(run_id, "root", False))

    async def middle(i: int) -> None:
        await body(sync)
        await writer.write(_done(run_id, f"m{i}", False))

    await asyncio.gather(*(middle(i) for i in range(width)))
    await body(sync)
    await writer.write(_done(run_id, "sink", True))
    return perf() - t0


async def one_run(writer: Writer, sync: bool = False) -> None:
    """A single-task run: start it, run the task, record it and the run's end."""
    run_id = uuid.uuid4().hex
    await writer.write(_start(run_id, "single"))
    await body(sync)
    await writer.write(_done(run_id, "only", True))


async def runs(writer: Writer, count: int = 1000, sync: bool = False) -> float:
    """`count` single-task runs started together; seconds."""
    t0 = perf()
    await asyncio.gather(*(one_run(writer, sync) for _ in range(count)))
    return perf() - t0


class LoopThread:
    """An event loop in a daemon thread, as a sync caller of an embedded engine sees it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="baseline-loop", daemon=True)
        self.thread.start()

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(fn(*args), self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class RoundTrip:
    """Sync code submits one single-task run to a loop thread and blocks for its result."""

    def __init__(self, writer_name: str, db_kind: str = "file") -> None:
        self.writer_name = writer_name
        self.db_kind = db_kind
        self.thread = LoopThread()
        self.db: Optional[Database] = None
        self.writer: Writer = NoWriter()

    def __enter__(self) -> "RoundTrip":
        if self.writer_name != "asyncio":
            async def open_db() -> None:
                self.db = await Database(self.db_kind).__aenter__()
                self.writer = self.db.writer(self.writer_name)

            self.thread.call(open_db)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.db is not None:
            self.thread.call(self.db.__aexit__, None, None, None)
        self.thread.close()

    def once(self) -> float:
        t0 = perf()
        self.thread.call(one_run, self.writer)
        return perf() - t0


# ---------------------------------------------------------------------------- standalone
async def _measure_async(db_kind: str, reps: int) -> list[list[str]]:
    rows: list[list[str]] = []
    async with Database(db_kind) as db:
        variants: list[tuple[str, Callable[[], Writer]]] = [("asyncio", NoWriter)]
        variants += [(name, lambda name=name: db.writer(name)) for name in WRITERS + EXPERIMENTAL]
        for label, workload, unit, convert in (
            ("chain 100, async no-op", lambda w: chain(w, False), "ms/task", lambda s: s * 1000 / 100),
            ("chain 100, sync no-op", lambda w: chain(w, True), "ms/task", lambda s: s * 1000 / 100),
            ("fan-out 1→1000→1, async", lambda w: fanout(w, False), "tasks/s", lambda s: 1002 / s),
            ("fan-out 1→1000→1, sync", lambda w: fanout(w, True), "tasks/s", lambda s: 1002 / s),
            ("1,000 runs together, async", lambda w: runs(w), "runs/s", lambda s: 1000 / s),
        ):
            figures = {}
            for name, make in variants:
                writer = make()
                await workload(writer)  # warm-up
                times = [await workload(writer) for _ in range(reps)]
                figures[name] = convert(median(times))
            rows.append([label, unit] + [fmt(figures[n]) for n, _ in variants])
            log(f"baselines/{db_kind}: {label} done")
    return rows


def _measure_round_trip(db_kind: str, samples: int) -> list[list[str]]:
    rows = []
    for name in ("asyncio",) + WRITERS:
        with RoundTrip(name, db_kind) as rt:
            for _ in range(max(10, samples // 10)):
                rt.once()
            lat = [rt.once() * 1000 for _ in range(samples)]
        rows.append([name, fmt(median(lat)), fmt(percentile(lat, 99))])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--db", choices=("file", "memory", "both"), default="both")
    args = parser.parse_args()
    reps = 3 if args.quick else 7
    samples = 200 if args.quick else 1000
    kinds = ("file", "memory") if args.db == "both" else (args.db,)
    print("## Baselines: plain asyncio and raw aiosqlite\n")
    print(f"Machine: {machine_line()}. Median of {reps} runs after a warm-up.")
    print("Writers: `txn` = one transaction per change with aiosqlite's public API (a thread hop")
    print("per statement); `hop` = one transaction per change as one call in aiosqlite's thread;")
    print("`grouped` = group commit (concurrent changes in one transaction, one hop per group);")
    print("the last two columns run the transactions on the loop thread itself (one per change,")
    print("and grouped per loop iteration), no thread hop: an experiment that prices the hop,")
    print("not a safe design as it stands (a busy database would block the loop).\n")
    for kind in kinds:
        where = "SQLite file in a temp dir (WAL, synchronous=NORMAL)" if kind == "file" else 'SQLite ":memory:"'
        print(f"### On a {where}\n")
        rows = asyncio.run(_measure_async(kind, reps))
        print(table(["workload", "unit", "asyncio (no persistence)"]
                    + [f"aiosqlite {w}" for w in WRITERS]
                    + ["sqlite3 on the loop thread (experiment)",
                       "sqlite3 on the loop thread, grouped (experiment)"], rows))
        print()
        print(f"Round trip from sync code through a loop thread, one single-task run, ms ({samples} samples):\n")
        print(table(["writer", "median ms", "p99 ms"], _measure_round_trip(kind, samples)))
        print()


if __name__ == "__main__":
    main()
