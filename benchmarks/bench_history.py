"""History queries: `list_executions` on 1,000,000 runs, every filter, SQLite and PostgreSQL.

    python benchmarks/bench_history.py [--quick] [--rows N] [--db sqlite,postgres]

Fills a fresh database (created by the store, so with its migrations) with N runs through a
benchmark-only bulk path: the SQLite store's own INSERT statement in one transaction, and
PostgreSQL's COPY into the store's table. Then times `store.list_executions` (the store's
public method: SQL, the thread hop or the pool, building the records) for each filter —
none, by workflow, by status, by both — matching many runs and few, first page (limit 100)
and a deep page (offset 10,000). Next to each: the statement before the history indexes
and their previous schema (one statement whose `? IS NULL OR` filters no index can serve; the
new indexes dropped in a transaction rolled back afterwards), on the same database in the same
run, and the query plan. PostgreSQL runs when CLOACA_TEST_POSTGRES_URL is set (a
schema of its own, dropped at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from typing import Any, Awaitable, Callable, Iterator, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from _common import fmt, log, machine_line, median, table  # noqa: E402

from cloaca._store import sqlite_queries as sq  # noqa: E402
from cloaca._store.sqlite import SQLiteStore  # noqa: E402

T0 = 1_750_000_000.0
GOAL_MS = 5.0
PAGE = 100
DEEP_OFFSET = 10_000

# The statements before the history indexes, for the same-run comparison.
OLD_SQLITE = f"""
    SELECT {sq.EXECUTION_COLUMNS} FROM workflow_executions
     WHERE (? IS NULL OR workflow_name = ?) AND (? IS NULL OR status = ?)
     ORDER BY started_at DESC, rowid DESC
     LIMIT ? OFFSET ?
"""
OLD_POSTGRES = f"""
    SELECT {sq.EXECUTION_COLUMNS} FROM workflow_executions
     WHERE ($1::text IS NULL OR workflow_name = $1) AND ($2::text IS NULL OR status = $2)
     ORDER BY started_at DESC, seq DESC
     LIMIT $3 OFFSET $4
"""

OLD_SQLITE_SCHEMA = [
    "DROP INDEX ix_executions_workflow", "DROP INDEX ix_executions_status",
    "DROP INDEX ix_executions_workflow_status",
    "CREATE INDEX ix_executions_unfinished ON workflow_executions (status)"
    " WHERE status IN ('Pending', 'Running')",
]
OLD_POSTGRES_SCHEMA = "DROP INDEX ix_executions_status; DROP INDEX ix_executions_workflow_status"

# (label, workflow filter, status filter, offset)
CASES: list[tuple[str, Optional[str], Optional[str], int]] = [
    ("none", None, None, 0),
    ("none, offset 10,000", None, None, DEEP_OFFSET),
    ("workflow, many (60%)", "wf_big", None, 0),
    ("workflow, many, offset 10,000", "wf_big", None, DEEP_OFFSET),
    ("workflow, few (50 runs)", "wf_rare", None, 0),
    ("status, many (Completed, 99%)", None, "Completed", 0),
    ("status, 1% (Failed)", None, "Failed", 0),
    ("status, few (Running, 20 runs)", None, "Running", 0),
    ("both, many (wf_big + Completed)", "wf_big", "Completed", 0),
    ("both, 1% (wf_big + Failed)", "wf_big", "Failed", 0),
    ("both, few (wf_big + Running, 10 runs)", "wf_big", "Running", 0),
    ("both, none match (wf_rare + Failed)", "wf_rare", "Failed", 0),
]


def run_rows(count: int) -> Iterator[tuple[Any, ...]]:
    """The runs, oldest first: a big workflow (60%), four of ~10%, a rare one (50 runs per
    million); ~1% Failed, 20 per million Running, the rest Completed; start times 10 ms
    apart, every tenth run sharing its start time with the previous one."""
    for i in range(count):
        if i % 20_000 == 0:
            workflow = "wf_rare"
        elif i % 10 < 6:
            workflow = "wf_big"
        else:
            workflow = f"wf_{i % 10}"
        if i % 50_000 == 0:
            status = "Running"
        elif i % 97 == 0 and workflow != "wf_rare":
            status = "Failed"
        else:
            status = "Completed"
        started = T0 + (i - (i % 10 == 1)) * 0.01
        done = status != "Running"
        yield (
            str(uuid.UUID(int=(7 << 76) | (2 << 62) | i)), workflow, "v1", status, "{}", started,
            "{}" if done else None, "boom" if status == "Failed" else None,
            started + 0.005 if done else None,
        )


async def timed(call: Callable[[], Awaitable[Any]], reps: int) -> "Timing":
    """(median ms, max ms, rows) of `reps` calls after one warm-up."""
    rows = len(await call())
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - t0) * 1000)
    return median(samples), max(samples), rows


Timing = tuple[float, float, int]


def filters(workflow: Optional[str], status: Optional[str]) -> tuple[tuple[bool, bool], list[Any]]:
    return (workflow is not None, status is not None), [f for f in (workflow, status) if f is not None]


# ---------------------------------------------------------------------------- SQLite
async def fill_sqlite(path: str, count: int) -> None:
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    conn.executemany(sq.INSERT_EXECUTION, (r + (None, None) for r in run_rows(count)))
    conn.execute("COMMIT")
    conn.close()


def sqlite_plan(path: str, workflow: Optional[str], status: Optional[str]) -> str:
    conn = sqlite3.connect(path)
    try:
        given, values = filters(workflow, status)
        plan = conn.execute("EXPLAIN QUERY PLAN " + sq.LIST_EXECUTIONS[given], values + [PAGE, 0])
        return "; ".join(r[3] for r in plan)
    finally:
        conn.close()


async def bench_sqlite(count: int, reps: int, old_reps: int) -> list[list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "history.db")
        t0 = time.perf_counter()
        await fill_sqlite(path, count)
        log(f"  SQLite: {count:,} runs written in {time.perf_counter() - t0:.1f} s")
        store = SQLiteStore(path)
        await store.open()
        conn = store._require_conn()

        def statement(sql: str, params: Sequence[Any]) -> Callable[[], Awaitable[Any]]:
            return lambda: store._read(lambda cur: cur.execute(sql, params).fetchall())

        try:
            calls, now = [], []
            for _, w, s, o in CASES:
                calls.append(await timed(lambda: store.list_executions(w, s, PAGE, o), reps))
                given, values = filters(w, s)
                now.append(await timed(statement(sq.LIST_EXECUTIONS[given], values + [PAGE, o]), reps))
            # Before: the previous schema (undone by the rollback) and statement.
            await conn.execute("BEGIN")
            for ddl in OLD_SQLITE_SCHEMA:
                await conn.execute(ddl)
            before = [await timed(statement(OLD_SQLITE, (w, w, s, s, PAGE, o)), old_reps)
                      for _, w, s, o in CASES]
            await conn.execute("ROLLBACK")
        finally:
            await store.close()
        plans = [sqlite_plan(path, w, s) for _, w, s, _ in CASES]
        return case_rows("SQLite", calls, now, before, plans)


# ---------------------------------------------------------------------------- PostgreSQL
async def bench_postgres(url: str, count: int, reps: int, old_reps: int) -> list[list[str]]:
    import asyncpg

    from cloaca._store import postgres_queries as pq
    from cloaca._store.postgres import PostgresStore

    schema = f"bench_history_{uuid.uuid4().hex[:8]}"
    store = PostgresStore(url, schema=schema)
    await store.open()
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    try:
        t0 = time.perf_counter()
        columns = [c.strip() for c in sq.EXECUTION_COLUMNS.split(",")]
        await conn.copy_records_to_table("workflow_executions", records=run_rows(count),
                                         columns=columns, schema_name=schema)
        await conn.execute("ANALYZE workflow_executions")  # what autovacuum does after a load
        log(f"  PostgreSQL: {count:,} runs written in {time.perf_counter() - t0:.1f} s")
        calls, now, plans = [], [], []
        for _, w, s, o in CASES:
            calls.append(await timed(lambda: store.list_executions(w, s, PAGE, o), reps))
            given, values = filters(w, s)
            # Prepared, as asyncpg runs it (PostgreSQL may switch to a generic plan after 5 runs).
            prepared = await conn.prepare(pq.LIST_EXECUTIONS[given])
            now.append(await timed(lambda: prepared.fetch(*values, PAGE, o), reps))
            plan = await conn.fetch("EXPLAIN " + pq.LIST_EXECUTIONS[given], *values, PAGE, o)
            plans.append(pg_plan(r[0] for r in plan))
        # Before: the previous schema (undone by the rollback) and statement.
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute(OLD_POSTGRES_SCHEMA)
        old = await conn.prepare(OLD_POSTGRES)
        before = [await timed(lambda: old.fetch(w, s, PAGE, o), old_reps) for _, w, s, o in CASES]
        await transaction.rollback()
        return case_rows("PostgreSQL", calls, now, before, plans)
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
        await store.close()


def pg_plan(lines: Any) -> str:
    """The plan's node names and index names, outermost first."""
    nodes = []
    for line in lines:
        text = line.strip().removeprefix("->").strip()
        if text.startswith(("Limit", "Index", "Seq Scan", "Sort", "Bitmap", "Incremental Sort")):
            nodes.append(text.split("  (")[0])
    return " → ".join(nodes)


def case_rows(db: str, calls: list[Timing], now: list[Timing], before: list[Timing],
              plans: list[str]) -> list[list[str]]:
    rows = []
    for (label, *_), call, new, old, plan in zip(CASES, calls, now, before, plans):
        if not call[2] == new[2] == old[2]:
            raise AssertionError(f"{db}, {label}: rows {call[2]} / {new[2]} now, {old[2]} before")
        rows.append([db, label, str(call[2]), f"**{fmt(call[0])}**", fmt(call[1]), fmt(new[0]),
                     fmt(old[0]), f"{old[0] / new[0]:,.1f}×",
                     "yes" if call[0] <= GOAL_MS else "**no**", f"`{plan}`"])
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", default="sqlite,postgres")
    args = parser.parse_args()
    reps, old_reps = (10, 2) if args.quick else (50, 5)
    dbs = set(args.db.split(","))
    url = os.environ.get("CLOACA_TEST_POSTGRES_URL")
    rows: list[list[str]] = []
    if "sqlite" in dbs:
        rows += await bench_sqlite(args.rows, reps, old_reps)
    if "postgres" in dbs and url:
        rows += await bench_postgres(url, args.rows, reps, old_reps)
    print("## bench_history.py: `list_executions` on a large history\n")
    print(f"Machine: {machine_line()}.  ")
    print(f"{args.rows:,} runs. Store call: `store.list_executions(workflow, status, "
          f"limit={PAGE}, offset)`, median and max of {reps} calls after a warm-up. Statement: "
          f"the store's SQL alone on one connection (SQLite: the store's; PostgreSQL: a direct "
          f"one, prepared), median of {reps}; before: the statement and schema before the "
          f"history indexes (`? IS NULL OR` filters; the new indexes dropped in a transaction "
          f"rolled back afterwards), same connection, median of {old_reps}; same database, "
          f"same run. Goal: ≤ {GOAL_MS:g} ms for every filter.")
    if "postgres" in dbs and not url:
        print("PostgreSQL skipped: CLOACA_TEST_POSTGRES_URL is not set.")
    print()
    print(table(["database", "filter", "rows", "store call, ms", "max ms", "statement, ms",
                 "before, ms", "before ÷ now", f"≤ {GOAL_MS:g} ms", "plan"], rows))


if __name__ == "__main__":
    asyncio.run(main())
