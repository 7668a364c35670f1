"""The SQLite store's connection thread (cloaca/_store/sqlite_thread.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cloaca._store.sqlite_thread import SQLiteThread


def _memory() -> sqlite3.Connection:
    return sqlite3.connect(":memory:", isolation_level=None)


def _insert(conn: sqlite3.Connection, value: int) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER)")
    conn.execute("INSERT INTO t VALUES (?)", (value,))
    return value


def _values(conn: sqlite3.Connection) -> list[int]:
    return [v for (v,) in conn.execute("SELECT v FROM t ORDER BY rowid")]


def _fail(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT * FROM no_such_table")


@pytest.mark.asyncio
async def test_jobs_run_in_submission_order_on_one_connection_and_return_their_results():
    thread = SQLiteThread(_memory, name="test")
    try:
        results = await asyncio.gather(*(thread.run(_insert, i) for i in range(50)))
        assert results == list(range(50))
        assert await thread.run(_values) == list(range(50))  # one connection: one :memory: db
    finally:
        await thread.close()


@pytest.mark.asyncio
async def test_a_failing_job_raises_in_its_caller_and_the_thread_goes_on():
    thread = SQLiteThread(_memory, name="test")
    try:
        with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
            await thread.run(_fail)
        assert await thread.run(_insert, 7) == 7
    finally:
        await thread.close()


@pytest.mark.asyncio
async def test_close_ends_the_thread_and_later_jobs_are_refused():
    thread = SQLiteThread(_memory, name="test")
    pending = asyncio.ensure_future(thread.run(_insert, 1))
    await asyncio.sleep(0)  # queued before close: still runs
    await thread.close()
    assert await pending == 1
    thread._thread.join(5)  # ends right after settling close()
    assert not thread._thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        await thread.run(_values)


@pytest.mark.asyncio
async def test_a_connection_that_cannot_open_fails_each_job_and_close_still_works(tmp_path):
    missing = tmp_path / "no" / "dir" / "x.db"
    thread = SQLiteThread(lambda: sqlite3.connect(missing), name="test")
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        await thread.run(_values)
    await thread.close()
    thread._thread.join(5)
    assert not thread._thread.is_alive()


def test_an_application_whose_loop_ends_without_closing_the_runner_exits(tmp_path: Path):
    db = tmp_path / "left-open.db"
    script = textwrap.dedent(f"""
        import asyncio, cloaca

        with cloaca.WorkflowBuilder("left_open"):
            @cloaca.task(id="only")
            def only(context):
                return context

        async def main():
            runner = cloaca.DefaultRunner({str(db)!r})
            await runner.astart()
            result = await runner.aexecute("left_open", cloaca.Context())
            print(result.status, result.execution_id, flush=True)
            # no shutdown: the loop ends with the runner still open

        asyncio.run(main())
    """)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=30)
    assert child.returncode == 0, child.stderr
    status, execution_id = child.stdout.split()
    assert status == "Completed"
    with sqlite3.connect(db) as conn:  # what was reported written is committed
        rows = conn.execute("SELECT status FROM workflow_executions WHERE id = ?",
                            (execution_id,)).fetchall()
    assert rows == [("Completed",)]
