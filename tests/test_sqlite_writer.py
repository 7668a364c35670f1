"""The SQLite store's writer: small groups on the loop's thread, never waiting for a lock."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
import pytest_asyncio

from cloaca._store import sqlite as sqlite_module
from cloaca._store import sqlite_group
from cloaca._store.base import ExecutionRecord
from cloaca._store.base import TaskRecord
from cloaca._store.sqlite import INLINE_MAX_ROWS
from cloaca._store.sqlite import SQLiteStore

T0 = 1_700_000_000.0


def execution(run_id: str) -> ExecutionRecord:
    return ExecutionRecord(run_id, "wf", "v1", "Running", "{}", T0)


async def new_run(store: SQLiteStore, run_id: str) -> None:
    await store.create_execution(execution(run_id), [TaskRecord(run_id, "a", "NotStarted")], "me", T0 + 60)


@pytest_asyncio.fixture
async def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "writer.db"))
    await s.open()
    yield s
    await s.close()


@pytest.mark.asyncio
async def test_small_groups_are_written_on_the_loop_and_large_ones_on_the_thread(store):
    await new_run(store, "r0")
    inline = store._inline_commits
    assert inline >= 1  # a lone call writing a few rows is a small group
    count = INLINE_MAX_ROWS  # each run writes 3 rows: together, far more than the bound
    await asyncio.gather(*(new_run(store, f"r{i}") for i in range(1, count)))
    # Queued together while the first group was written: at least one group was too large.
    assert store._inline_commits - inline < count - 1
    stored = [await store.get_run(f"r{i}") for i in range(count)]
    assert all(run is not None and run.tasks[0].status == "NotStarted" for run in stored)

    # One call writing many rows is written on the thread too.
    await store.upsert_trigger_schedule("t", "wf", 1000, False, T0)
    inline = store._inline_commits
    await store.record_trigger_polls([("t", T0 + i) for i in range(INLINE_MAX_ROWS + 1)])
    assert store._inline_commits == inline
    assert (await store.get_trigger_schedule("t")).last_poll_at == T0 + INLINE_MAX_ROWS
    await store.record_trigger_polls([("t", T0 + 100)])
    assert store._inline_commits == inline + 1


@pytest.mark.asyncio
async def test_a_write_waits_on_the_thread_while_another_process_holds_the_lock(store, tmp_path):
    await new_run(store, "r")
    other = sqlite3.connect(str(tmp_path / "writer.db"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process is writing
    inline = store._inline_commits
    try:
        write = asyncio.ensure_future(
            store.save_progress([TaskRecord("r", "a", "Running", attempt=1, started_at=T0 + 1)])
        )
        ticks = 0
        for _ in range(20):  # the loop keeps running: the write waits in the thread
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not write.done()
        assert store._inline_commits == inline
    finally:
        other.execute("COMMIT")
        other.close()
    await asyncio.wait_for(write, 30)
    assert (await store.get_run("r")).tasks[0].status == "Running"
    # The loop's connection gave up at once instead of waiting for the lock on the loop.
    assert store._inline is not None
    assert store._inline.execute("PRAGMA busy_timeout").fetchone()[0] == 0


@pytest.mark.asyncio
async def test_the_thread_checkpoints_the_wal_once_so_many_rows_were_written_on_the_loop(store, monkeypatch):
    checkpoints: list[int] = []
    real = sqlite_module._checkpoint

    def counting(conn: sqlite3.Connection) -> None:
        checkpoints.append(1)
        real(conn)

    monkeypatch.setattr(sqlite_module, "CHECKPOINT_WEIGHT", 40)
    monkeypatch.setattr(sqlite_module, "_checkpoint", counting)
    store._inline_weight = 0
    before = store._inline_commits
    for i in range(25):  # one at a time: a group each, of 3 rows (the run, its task, 1 spare)
        await new_run(store, f"c{i}")
    await asyncio.sleep(0)  # let the last checkpoint's thread call land
    await store.get_run("c0")  # queued behind the checkpoints in the thread
    assert store._inline_commits - before == 25
    assert len(checkpoints) == 25 * 4 // 40  # every 10 commits of 3 rows (+1 a commit)

    # A large group counts its rows: one of 40 runs (120 rows + 1) checkpoints at once.
    checkpoints.clear()
    store._inline_weight = 0
    before = store._inline_commits
    await asyncio.gather(*(new_run(store, f"d{i}") for i in range(40)))
    await asyncio.sleep(0)
    await store.get_run("d0")
    assert store._inline_commits - before == 1
    assert len(checkpoints) == 1 and store._inline_weight == 0


@pytest.fixture
def groups(monkeypatch) -> list[int]:
    """The number of writes in each group transaction the store runs from now on."""
    sizes: list[int] = []
    run_group = sqlite_module.run_group

    def recording(conn, ops):
        sizes.append(len(ops))
        return run_group(conn, ops)

    monkeypatch.setattr(sqlite_module, "run_group", recording)
    return sizes


@pytest.mark.asyncio
@pytest.mark.parametrize("tasks_per_run", [1, INLINE_MAX_ROWS])  # on the loop; on the thread
@pytest.mark.parametrize("together_from", [sqlite_group.TOGETHER_FROM, 2])  # one by one; together
async def test_a_failing_call_of_a_group_undoes_only_its_own_writes(
    store, groups, monkeypatch, tasks_per_run, together_from,
):
    monkeypatch.setattr(sqlite_group, "TOGETHER_FROM", together_from)

    def create(run_id: str, names: list[str]):
        tasks = [TaskRecord(run_id, name, "NotStarted") for name in names]
        return store.create_execution(execution(run_id), tasks, "me", T0 + 60)

    names = [f"t{i}" for i in range(tasks_per_run)]
    # The run's row is written, then its second task collides with its first.
    outcomes = await asyncio.gather(
        create("before", names), create("broken", names + names[:1]), create("after", names),
        return_exceptions=True,
    )
    assert groups == [3]  # one group: the failure had neighbours to spare
    assert outcomes[0] is True and outcomes[2] is True
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    assert await store.get_run("broken") is None  # its run row went with its failed task row
    for run_id in ("before", "after"):
        assert sorted(t.task_name for t in (await store.get_run(run_id)).tasks) == sorted(names)

    # The next group, with nothing failing, commits every call at once.
    assert await asyncio.gather(create("third", names), create("fourth", names)) == [True, True]
    assert groups[-1] == 2


@pytest.mark.asyncio
async def test_a_group_of_runs_saved_together_refuses_only_the_write_of_a_run_taken_over(store, groups, monkeypatch):
    monkeypatch.setattr(sqlite_group, "TOGETHER_FROM", 2)  # groups this small go together too
    for run_id in ("a", "b", "c"):
        await new_run(store, run_id)
    assert await store.claim_orphans("rescuer", T0 + 61, T0 + 120, ["wf"])  # every lease expired
    await store.create_execution(execution("b2"), [TaskRecord("b2", "a", "NotStarted")], "rescuer", T0 + 120)
    done = {run_id: TaskRecord(run_id, "a", "Completed", attempt=1, completed_at=T0 + 70,
                               output_context='{"v": 1}', finish_seq=0) for run_id in ("a", "b2", "c")}
    groups.clear()
    outcomes = await asyncio.gather(
        store.save_progress([done["a"]], None, "rescuer"),
        store.save_progress([TaskRecord("b", "a", "Failed")], None, "me"),  # "me" lost it
        store.save_progress([done["c"]], None, "rescuer"),
        # The same row twice in one group: the later write is what stays.
        store.save_progress([TaskRecord("b2", "a", "Running", attempt=1)], None, "rescuer"),
        store.save_progress([done["b2"]], None, "rescuer"),
        return_exceptions=True,
    )
    assert groups == [5]
    assert [type(o).__name__ for o in outcomes] == ["NoneType", "RunLost", "NoneType", "NoneType", "NoneType"]
    for run_id in ("a", "b2", "c"):
        assert (await store.get_run(run_id)).tasks == [done[run_id]]
    assert (await store.get_run("b")).tasks[0].status == "NotStarted"

    # With every run held, the same group is written with a statement per kind of row.
    statements: list[str] = []
    store._inline.set_trace_callback(statements.append)
    finished = execution("a")
    finished.status, finished.final_context, finished.completed_at = "Completed", "{}", T0 + 80
    await asyncio.gather(
        store.save_progress([done["c"]], None, "rescuer"),
        store.save_progress([done["a"]], finished, "rescuer"),
    )
    store._inline.set_trace_callback(None)
    assert groups[-1] == 2
    assert sum("SELECT id, owner, status" in s for s in statements) == 1  # one read checks both
    assert not any("SELECT owner, status" in s for s in statements)  # not one read per write
    assert (await store.get_run("a")).execution.status == "Completed"


@pytest.mark.asyncio
async def test_a_small_group_of_runs_saved_is_written_one_write_after_the_other(store):
    for run_id in ("a", "b"):
        await new_run(store, run_id)
    statements: list[str] = []
    store._inline.set_trace_callback(statements.append)
    await asyncio.gather(*(store.save_progress([TaskRecord(r, "a", "Running", attempt=1)], None, "me")
                           for r in ("a", "b")))
    store._inline.set_trace_callback(None)
    assert sum("SELECT owner, status" in s for s in statements) == 2
    assert not any("SELECT id, owner, status" in s for s in statements)
