"""The SQLite store: one connection in a thread of its own, one writer, group commit.

Concurrent calls are queued and applied together in one `BEGIN IMMEDIATE` transaction run
as a single call in the connection's thread; a failing call does not undo its neighbours
(the group is then replayed with each call in a savepoint). A thread hop costs about as much
as a small write, so this is what makes many concurrent runs cheap. Changes of runs already
started go first; new runs fill at most `MAX_NEW_RUNS_PER_BATCH` places of a group, so that
with thousands submitted at once the first finish while later ones are still being created.

The connection is the standard library's `sqlite3`, served by a daemon thread of our own
(`_sqlite_thread.SQLiteThread`), not aiosqlite: aiosqlite's public API costs a thread hop
per statement and has no public way to run a whole transaction in its thread in one hop,
which the group commit needs; its thread is not a daemon either, so an application whose
loop ends without closing the store could not exit. Our thread does what aiosqlite's does
(a queue of calls, results handed back with `call_soon_threadsafe`) through public APIs.

A group of at most `INLINE_MAX_ROWS` rows (a chain's step, a few dozen one-task runs, a
fan-out of a thousand tasks made ready) is cheaper still written on the event loop's thread,
through a second connection that never waits: it has no busy timeout, so when another
process holds the write lock the group goes to the thread, which waits as usual; and it
never checkpoints (the thread does, once `CHECKPOINT_WEIGHT` rows and commits were written
on the loop), so the loop never waits for a checkpoint's fsync. Only larger groups, which
would hold the loop for more than a few milliseconds, are written on the thread.

Work is shared by run (`WorkSharing.BY_RUN`) unless the store is made with
`work_sharing=WorkSharing.BY_TASK` (URL `sqlite:///path?sharing=task`): then, as on
PostgreSQL, any runner claims any ready task (`claim_tasks`) and each scheduling step is a
compare-and-set on the run's version (`commit_step`, a call of the group commit like any
other: a refused step writes nothing and leaves its neighbours alone). Every write
transaction holds the database's one write lock, so claims never overlap without row locks.
`commit_step_locked` cannot hold that lock while `compute` runs on the event loop: it reads
what changed, computes on the loop and writes compare-and-set, again until the write goes
through. SQLite pushes no notices: runners on other processes find new work by polling.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sqlite3
import urllib.parse
import uuid
from functools import partial
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, TypeVar

from .._ids import time_ordered_id
from . import sqlite_queries as q
from .base import (
    ClaimedWork,
    ClaimStore,
    CronScheduleRecord,
    CronSlotClaim,
    CronStats,
    ExecutionRecord,
    FireRequest,
    FiringRecord,
    OpenFire,
    ScheduleExecutionRecord,
    StepFunction,
    Store,
    StoredRun,
    SubscriptionRecord,
    TaskRecord,
    TriggerScheduleRecord,
    WorkSharing,
    check_held,
    check_retryable,
    history_filters,
    nothing_to_claim,
    reopened_status,
    runs_written,
)
from .sqlite_group import Op, Rows, Statements, apply_rows, run_group
from .sqlite_thread import SQLiteThread

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
_MAX_BATCH = 2_000
MAX_NEW_RUNS_PER_BATCH = 256
"""New runs a group admits after every waiting change of runs already started: with
thousands submitted at once, the first ones finish while later ones are still being created,
instead of all of them ending together."""
INLINE_MAX_ROWS = 1_024
"""Groups writing at most this many rows are written on the loop's thread when the lock is
free (a write of 1,024 rows holds the loop 3–6 ms). Measured against 32, one process, runs
alternating, two passes: 100 / 1,000 / 10,000 one-task runs in flight +6–14 % / +8–41 % /
+12–21 % runs/s; the loop's worst lateness in those batches did not grow (it is the batch's
own work)."""
_BULK = 1 << 30
"""The weight of a call that may write any number of rows (never written on the loop)."""
CHECKPOINT_WEIGHT = 1_000
"""The thread checkpoints the WAL once the groups written on the loop's thread reach this
many rows, a commit counting one more: every ~330 commits of a chain's step, after each
group of 1,000 rows (SQLite's own automatic checkpoint comes every 1,000 pages). A short WAL
is cheaper to write and read through: against 4,000, callgrind counts 1.1–1.6 % fewer
instructions per unit in every core workload."""


class SQLiteStore(Store, ClaimStore):
    """A SQLite database file shared safely by the runners of one host."""

    runs_created_at_once = 64
    """A group commit here costs no round trip: small groups are as cheap a run, and runs
    kept short-lived spare the cyclic GC (1,000 / 10,000 one-task runs submitted together:
    ~4,400 runs/s with 32–64, ~3,600 with 256, ~2,000 with no bound at 10,000)."""

    def __init__(
        self, path: str, *, delete_on_close: bool = False,
        work_sharing: WorkSharing = WorkSharing.BY_RUN, create: bool = True,
    ) -> None:
        """`path`: a file path or a `file:` URI. `create=False`: a file that does not exist
        is an error at `open`, and none is created."""
        self.path = path
        self.work_sharing = work_sharing
        self.description = f"SQLite database '{path}'"
        self._target, self._must_exist = (path, None) if create else _existing_only(path)
        self._delete_on_close = delete_on_close
        self._conn: Optional[SQLiteThread] = None
        self._pending: list[tuple[Op, asyncio.Future[Any], int]] = []
        self._new_runs: list[tuple[Op, asyncio.Future[Any], int]] = []  # creations wait behind
        self._flusher: Optional[asyncio.Task[None]] = None
        self._inline: Optional[sqlite3.Connection] = None
        self._inline_commits = 0
        self._inline_weight = 0
        """Rows and commits written on the loop's thread since the last checkpoint."""

    # lifecycle ----------------------------------------------------------------------
    async def open(self) -> None:
        if self._must_exist is not None and not os.path.exists(self._must_exist):
            where = os.path.abspath(self._must_exist)
            also = "" if where == self.path else f" ({where})"
            raise RuntimeError(f"No SQLite database at '{self.path}'{also}: no such file (none was created)")
        try:
            self._conn = SQLiteThread(self._connect, name=f"cloaca-sqlite {self.path}")
            await self._conn.run(_prepare, self.work_sharing)
            self._inline = _open_inline(self._target)
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            raise RuntimeError(f"Cannot open {self.description}: {exc}") from None

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        if self._inline is not None:
            inline, self._inline = self._inline, None
            inline.close()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()
        if self._delete_on_close:
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(self.path + suffix)
                except FileNotFoundError:
                    pass

    # the writer ---------------------------------------------------------------------
    def _write(self, op: Op, rows: int = 1, new_run: bool = False) -> "asyncio.Future[Any]":
        """Run `op` (writing at most `rows` rows) in the next group transaction — or, for
        `new_run`, in one that has room left after the changes of started runs; its result
        once committed, to be awaited (a future, not a coroutine: one frame less per write)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        (self._new_runs if new_run else self._pending).append((op, future, rows))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return future

    async def _flush(self) -> None:
        try:
            while self._pending or self._new_runs:
                batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
                batch += self._new_runs[:MAX_NEW_RUNS_PER_BATCH]
                del self._new_runs[:MAX_NEW_RUNS_PER_BATCH]
                ops = [op for op, _, _ in batch]
                written = sum(rows for _, _, rows in batch)
                outcomes = self._run_inline(ops, written) if written <= INLINE_MAX_ROWS else None
                if outcomes is None:
                    try:  # (closed: each write fails with that, rather than waiting for ever)
                        outcomes = await self._require_conn().run(run_group, ops)
                    except BaseException as exc:  # the commit itself failed: nothing was written
                        outcomes = [(False, exc)] * len(batch)
                for (_, future, _), (ok, value) in zip(batch, outcomes):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._flusher = None

    def _run_inline(self, ops: list[Op], rows: int) -> Optional[list[tuple[bool, Any]]]:
        """The group (writing at most `rows` rows) written on this thread; None if the write
        lock is taken (or any other failure: the group is then written, or fails, on the
        thread as usual)."""
        if self._inline is None:
            return None
        try:
            outcomes = run_group(self._inline, ops)
        except sqlite3.Error:
            return None  # rolled back: nothing was written
        self._inline_commits += 1
        self._inline_weight += rows + 1
        if self._inline_weight >= CHECKPOINT_WEIGHT:
            self._inline_weight = 0
            conn = self._require_conn()
            checkpoint = asyncio.ensure_future(conn.run(_checkpoint))
            checkpoint.add_done_callback(_ignore_result)
        return outcomes

    async def _read(self, op: Callable[[sqlite3.Cursor], T], snapshot: bool = False) -> T:
        """`op`'s result, read in the connection's thread; with `snapshot`, its statements
        all read one state of the database."""
        conn = self._require_conn()
        return await conn.run(_run_snapshot if snapshot else _run_read, op)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._target, isolation_level=None, uri=self._target.startswith("file:"))

    def _require_conn(self) -> SQLiteThread:
        if self._conn is None:
            raise RuntimeError(f"{self.description} is closed")
        return self._conn

    # runs ---------------------------------------------------------------------------
    def create_execution(
        self,
        execution: ExecutionRecord,
        tasks: Sequence[TaskRecord],
        owner: str,
        lease_until: float,
        fire: Optional[FireRequest] = None,
        link_fire_id: Optional[str] = None,
    ) -> "asyncio.Future[bool]":
        # Shared by task, the creator holds the tasks it starts at once; by run, the run's lease.
        holder = owner if self.work_sharing is WorkSharing.BY_TASK else None
        op: Op = _Creation(_create_run, execution, tasks, owner, lease_until, holder)
        if fire is not None or link_fire_id is not None:
            op = partial(_create_fired, execution, fire, link_fire_id, op)
        return self._write(op, rows=len(tasks) + 2, new_run=True)

    def save_progress(
        self, tasks: Sequence[TaskRecord], finished: Optional[ExecutionRecord] = None,
        owner: Optional[str] = None,
    ) -> "asyncio.Future[None]":
        return self._write(_Progress(_save_progress, tasks, finished, owner),
                           rows=len(tasks) + (0 if finished is None else 2))

    async def claim_orphans(
        self, owner: str, now: float, lease_until: float, workflow_names: Sequence[str]
    ) -> list[StoredRun]:
        def op(cur: sqlite3.Cursor) -> list[StoredRun]:
            ids = [r[0] for r in cur.execute(q.SELECT_ORPHANS, (now, _json_names(tuple(workflow_names))))]
            return _take_runs(cur, ids, q.CLAIM_EXECUTION, owner, lease_until)

        return await self._write(op, rows=_BULK)

    async def renew_leases(self, owner: str, lease_until: float) -> None:
        await self._write(
            lambda cur: cur.execute(q.RENEW_LEASES, (lease_until, owner)) and None, rows=_BULK
        )

    async def release_leases(self, owner: str) -> None:
        by_task = self.work_sharing is WorkSharing.BY_TASK

        def op(cur: sqlite3.Cursor) -> None:
            if by_task:  # (shared by run, no task has a holder)
                cur.execute(q.BUMP_RUNS_OF_OWNED_TASKS, (owner,))
                cur.execute(q.RELEASE_TASKS, (owner,))
            cur.execute(q.RELEASE_LEASES, (owner,))

        await self._write(op, rows=_BULK)

    async def cancel_execution(self, execution_id: str, now: float) -> Optional[bool]:
        def op(cur: sqlite3.Cursor) -> Optional[bool]:
            row = cur.execute(q.SELECT_RUN_STATUS, (execution_id,)).fetchone()
            if row is None:
                return None
            if row[0] not in ("Pending", "Running"):
                return False
            cur.execute(q.CANCEL_EXECUTION, (now, execution_id))
            cur.execute(q.CANCEL_TASKS, (now, execution_id))
            cur.execute(q.CLOSE_FIRES_OF_RUN, (now, now, execution_id))
            return True

        return await self._write(op, rows=_BULK)

    async def reset_for_retry(
        self, execution_id: str, owner: Optional[str], now: float, lease_until: Optional[float]
    ) -> Optional[StoredRun]:
        def op(cur: sqlite3.Cursor) -> Optional[StoredRun]:
            row = cur.execute(q.SELECT_RUN_STATUS, (execution_id,)).fetchone()
            if row is None:
                return None
            check_retryable(execution_id, row[0])
            status = reopened_status(owner, self.work_sharing)
            cur.execute(q.REOPEN_EXECUTION, (status, owner, lease_until, execution_id))
            cur.execute(q.RESET_TASKS_FOR_RETRY, (execution_id,))
            return _load_run(cur, execution_id)

        return await self._write(op, rows=_BULK)

    async def ended_runs(self, execution_ids: Sequence[str]) -> list[str]:
        ids = json.dumps(list(execution_ids))
        rows = await self._read(lambda cur: cur.execute(q.ENDED_RUNS, (ids,)).fetchall())
        return [r[0] for r in rows]

    async def get_run(self, execution_id: str) -> Optional[StoredRun]:
        return await self._read(lambda cur: _load_run(cur, execution_id), snapshot=True)

    # runs shared by task ------------------------------------------------------------
    async def claim_pending_runs(
        self, owner: str, now: float, lease_until: float, workflow_names: Sequence[str], limit: int,
    ) -> list[StoredRun]:
        if nothing_to_claim(workflow_names, limit, None):
            return []
        pick = {"now": now, "names": _json_names(tuple(workflow_names)), "limit": limit}
        if not await self._read(lambda cur: cur.execute(q.SELECT_PENDING, pick).fetchone()):
            return []  # (the usual case, without taking the write lock)

        def op(cur: sqlite3.Cursor) -> list[StoredRun]:
            ids = [r[0] for r in cur.execute(q.SELECT_PENDING, pick).fetchall()]
            return _take_runs(cur, ids, q.HOLD_EXECUTION, owner, lease_until)

        return await self._write(op, rows=_BULK)

    async def claim_tasks(
        self, owner: str, now: float, lease_until: float, workflow_names: Sequence[str],
        limit: int, take_over: bool, known_versions: Mapping[str, int],
        task_names: Optional[Sequence[str]] = None,
    ) -> list[ClaimedWork]:
        if nothing_to_claim(workflow_names, limit, task_names):
            return []
        pick = {"now": now, "names": _json_names(tuple(workflow_names)),
                "only": None if task_names is None else _json_names(tuple(task_names))}
        # RETURNING gives the values as bound: floats, as the columns store them.
        claim = {"now": float(now), "owner": owner, "lease_until": float(lease_until)}
        known = dict(known_versions)

        def op(cur: sqlite3.Cursor) -> list[ClaimedWork]:
            claimed: dict[str, list[TaskRecord]] = {}
            left = limit
            for expired in (True, False) if take_over else (False,):
                for record in _claim(cur, expired, {**pick, "limit": left}, claim):
                    claimed.setdefault(record.execution_id, []).append(record)
                    left -= 1
                if left <= 0:
                    break
            return _claimed_work(cur, claimed, known)

        return await self._write(op, rows=limit + 1)

    async def commit_step(
        self, execution_id: str, version: int, owner: str, lease_until: float,
        tasks: Sequence[TaskRecord], finished: Optional[ExecutionRecord] = None,
    ) -> bool:
        rows = [_task_update_row(t)[:-2] + _held(t, owner, lease_until)
                + (version + 1, t.execution_id, t.task_name) for t in tasks]
        if finished is None:
            sql, params = q.STEP_RUN, (execution_id, version)
        else:
            sql, params = q.STEP_AND_FINISH_RUN, (
                finished.status, finished.final_context, finished.error_message,
                finished.completed_at, execution_id, version,
            )

        def op(cur: sqlite3.Cursor) -> bool:
            stepped = cur.execute(sql, params).fetchone()  # (the run's status after the step)
            if stepped is None:
                return False  # the version moved on (or the run ended): nothing written
            if stepped[0] == "Pending":
                cur.execute(q.START_PENDING_RUN, (execution_id,))  # its first step starts it
            cur.executemany(q.STEP_TASK, rows)
            if finished is not None:
                cur.execute(q.CLOSE_FIRES_OF_RUN,
                            (finished.completed_at, finished.completed_at, execution_id))
            return True

        return await self._write(op, rows=len(tasks) + 2)

    async def commit_step_locked(
        self, execution_id: str, since_version: int, task_names: Sequence[str], owner: str,
        lease_until: float, compute: StepFunction,
    ) -> bool:
        also = list(task_names)
        refused_at: Optional[int] = None
        while True:
            stored = await self._read(
                lambda cur: _load_run(cur, execution_id, since_version, also), snapshot=True
            )
            if stored is None or stored.version == refused_at:
                return False  # gone, or refused for another reason than a newer version
            step = compute(stored)
            if step is None:
                return False
            tasks, finished = step
            if await self.commit_step(execution_id, stored.version, owner, lease_until, tasks, finished):
                return True
            # Another writer went first: compute again from what it wrote, with the rows this
            # computation changed (as stored) so that it can be undone in memory.
            refused_at = stored.version
            also = list(dict.fromkeys(also + [t.task_name for t in tasks]))

    async def renew_task_leases(
        self, owner: str, tasks: Sequence[tuple[str, str]], lease_until: float
    ) -> None:
        if not tasks:
            return
        rows = [(lease_until, execution_id, task_name, owner) for execution_id, task_name in tasks]
        await self._write(lambda cur: cur.executemany(q.RENEW_TASK_LEASE, rows) and None,
                          rows=len(rows))

    async def list_executions(
        self, workflow_name: Optional[str], status: Optional[str], limit: int, offset: int
    ) -> list[ExecutionRecord]:
        given, filters = history_filters(workflow_name, status)
        sql, params = q.LIST_EXECUTIONS[given], (*filters, limit, offset)
        rows = await self._read(lambda cur: cur.execute(sql, params).fetchall())
        return [ExecutionRecord(*r) for r in rows]

    async def count_executions(self, workflow_name: Optional[str]) -> dict[str, int]:
        if workflow_name is None:
            sql, params = q.COUNT_EXECUTIONS, ()
        else:
            sql, params = q.COUNT_EXECUTIONS_OF_WORKFLOW, (workflow_name,)
        rows = await self._read(lambda cur: cur.execute(sql, params).fetchall())
        return {status: count for status, count in rows}

    # triggers -----------------------------------------------------------------------
    async def upsert_trigger_schedule(
        self, trigger_name: str, workflow_name: str, poll_interval_ms: int,
        allow_concurrent: bool, now: float,
    ) -> TriggerScheduleRecord:
        def op(cur: sqlite3.Cursor) -> TriggerScheduleRecord:
            cur.execute(
                q.UPSERT_TRIGGER,
                (str(uuid.uuid4()), trigger_name, workflow_name, poll_interval_ms,
                 int(allow_concurrent), now, now),
            )
            return _trigger(cur.execute(q.SELECT_TRIGGER, (trigger_name,)).fetchone())

        return await self._write(op)

    async def list_trigger_schedules(
        self, enabled_only: bool, limit: int, offset: int
    ) -> list[TriggerScheduleRecord]:
        sql = q.LIST_ENABLED_TRIGGERS if enabled_only else q.LIST_TRIGGERS
        rows = await self._read(lambda cur: cur.execute(sql, (limit, offset)).fetchall())
        return [_trigger(r) for r in rows]

    async def get_trigger_schedule(self, trigger_name: str) -> Optional[TriggerScheduleRecord]:
        row = await self._read(lambda cur: cur.execute(q.SELECT_TRIGGER, (trigger_name,)).fetchone())
        return None if row is None else _trigger(row)

    async def set_trigger_enabled(self, trigger_name: str, enabled: bool, now: float) -> None:
        await self._write(
            lambda cur: cur.execute(q.SET_TRIGGER_ENABLED, (int(enabled), now, trigger_name)) and None
        )

    async def record_trigger_polls(self, polls: Sequence[tuple[str, float]]) -> None:
        rows = [(at, name) for name, at in polls]
        await self._write(lambda cur: cur.executemany(q.RECORD_TRIGGER_POLL, rows) and None,
                          rows=len(rows))

    async def record_unlaunched_fire(self, trigger_name: str, context_hash: str, now: float) -> None:
        await self._write(lambda cur: _insert_fire(cur, trigger_name, context_hash, None, now, now))

    async def open_trigger_fires(self, now: float) -> list[OpenFire]:
        def op(cur: sqlite3.Cursor) -> list[OpenFire]:
            cur.execute(q.CLOSE_ENDED_FIRES, (now, now))
            return [OpenFire(*r) for r in cur.execute(q.SELECT_OPEN_TRIGGER_FIRES).fetchall()]

        return await self._write(op, rows=_BULK)

    async def trigger_history(
        self, trigger_name: str, limit: int, offset: int
    ) -> list[ScheduleExecutionRecord]:
        params = (trigger_name, limit, offset)
        rows = await self._read(lambda cur: cur.execute(q.TRIGGER_HISTORY, params).fetchall())
        return [ScheduleExecutionRecord(*r) for r in rows]


    # cron ---------------------------------------------------------------------------
    async def create_cron_schedule(self, record: CronScheduleRecord) -> bool:
        return await self._write(lambda cur: cur.execute(q.INSERT_CRON, _cron_row(record)).rowcount == 1)

    async def upsert_cron_instance(self, record: CronScheduleRecord) -> CronScheduleRecord:
        def op(cur: sqlite3.Cursor) -> CronScheduleRecord:
            key = (record.workflow_name, record.instance_name)
            row = cur.execute(q.SELECT_CRON_INSTANCE, key).fetchone()
            if row is None:
                cur.execute(q.INSERT_CRON, _cron_row(record))
                return record
            existing = _cron(row)
            if (existing.cron_expression, existing.timezone) != (record.cron_expression, record.timezone):
                existing.next_run_at = record.next_run_at
            existing.cron_expression, existing.timezone = record.cron_expression, record.timezone
            existing.params, existing.updated_at = record.params, record.updated_at
            cur.execute(
                q.UPDATE_CRON_INSTANCE,
                (existing.cron_expression, existing.timezone, existing.params,
                 existing.next_run_at, existing.updated_at, existing.id),
            )
            return existing

        return await self._write(op)

    async def get_cron_schedule(self, schedule_id: str) -> Optional[CronScheduleRecord]:
        row = await self._read(lambda cur: cur.execute(q.SELECT_CRON, (schedule_id,)).fetchone())
        return None if row is None else _cron(row)

    async def list_cron_schedules(
        self, enabled_only: bool, limit: int, offset: int
    ) -> list[CronScheduleRecord]:
        params = (int(enabled_only), limit, offset)
        rows = await self._read(lambda cur: cur.execute(q.LIST_CRON, params).fetchall())
        return [_cron(r) for r in rows]

    async def update_cron_schedule(
        self, schedule_id: str, cron_expression: str, timezone: str, next_run_at: float, now: float
    ) -> bool:
        params = (cron_expression, timezone, next_run_at, now, schedule_id)
        return await self._write(lambda cur: cur.execute(q.UPDATE_CRON, params).rowcount == 1)

    async def set_cron_enabled(self, schedule_id: str, enabled: bool, now: float) -> None:
        await self._write(
            lambda cur: cur.execute(q.SET_CRON_ENABLED, (int(enabled), now, schedule_id)) and None
        )

    async def delete_cron_schedule(self, schedule_id: str) -> None:
        def op(cur: sqlite3.Cursor) -> None:
            cur.execute(q.DELETE_CRON_FIRES, (schedule_id,))
            cur.execute(q.DELETE_CRON, (schedule_id,))

        await self._write(op, rows=_BULK)

    async def due_cron_schedules(self, now: float) -> list[CronScheduleRecord]:
        rows = await self._read(lambda cur: cur.execute(q.DUE_CRON, (now,)).fetchall())
        return [_cron(r) for r in rows]

    async def next_cron_run_at(self) -> Optional[float]:
        return await self._read(lambda cur: cur.execute(q.NEXT_CRON_RUN).fetchone()[0])

    async def claim_cron_slots(
        self, claim: CronSlotClaim, now: float
    ) -> Optional[list[tuple[str, float]]]:
        def op(cur: sqlite3.Cursor) -> Optional[list[tuple[str, float]]]:
            advanced = cur.execute(
                q.ADVANCE_CRON,
                (claim.new_next_run_at, now, now, claim.schedule_id, claim.expected_next_run_at),
            ).rowcount
            if advanced != 1:
                return None
            for slot in claim.skipped:
                cur.execute(
                    q.INSERT_CRON_FIRE,
                    (time_ordered_id(), claim.schedule_id, slot, now, now, "skipped", now, now),
                )
            claimed = []
            for slot in claim.launch:
                fire_id = time_ordered_id()
                inserted = cur.execute(
                    q.INSERT_CRON_FIRE,
                    (fire_id, claim.schedule_id, slot, now, None, None, now, now),
                ).rowcount
                if inserted == 1:
                    claimed.append((fire_id, slot))
            return claimed

        return await self._write(op, rows=len(claim.launch) + len(claim.skipped) + 1)

    async def close_schedule_fire(
        self, fire_id: str, now: float, outcome: str, error: Optional[str]
    ) -> None:
        await self._write(
            lambda cur: cur.execute(q.CLOSE_SCHEDULE_FIRE, (now, now, outcome, error, fire_id)) and None
        )

    async def cron_history(
        self, schedule_id: str, limit: int, offset: int
    ) -> list[ScheduleExecutionRecord]:
        params = (schedule_id, limit, offset)
        rows = await self._read(lambda cur: cur.execute(q.CRON_HISTORY, params).fetchall())
        return [ScheduleExecutionRecord(*r) for r in rows]

    async def schedule_stats(self, since: float, lost_before: float) -> CronStats:
        row = await self._read(
            lambda cur: cur.execute(q.SCHEDULE_STATS, (lost_before, since)).fetchone()
        )
        return CronStats(row[0] or 0, row[1] or 0, row[2] or 0)

    async def lost_cron_fires(
        self, lost_before: float, oldest: float, max_attempts: int, now: float
    ) -> list[tuple[ScheduleExecutionRecord, CronScheduleRecord]]:
        def op(cur: sqlite3.Cursor) -> list[tuple[ScheduleExecutionRecord, CronScheduleRecord]]:
            cur.execute(q.CLOSE_ENDED_CRON_FIRES, (now, now))
            cur.execute(q.ABANDON_LOST_CRON_FIRES, (now, now, lost_before, oldest, max_attempts))
            rows = cur.execute(q.SELECT_LOST_CRON_FIRES, (lost_before,)).fetchall()
            width = len(q.FIRE_COLUMNS.split(","))
            lost = []
            for row in rows:
                cur.execute(q.COUNT_FIRE_ATTEMPT, (now, now, row[0]))
                lost.append((ScheduleExecutionRecord(*row[:width]), _cron(row[width:])))
            return lost

        return await self._write(op, rows=_BULK)

    # reactors -----------------------------------------------------------------------
    async def upsert_subscription(
        self, new_id: str, reactor_name: str, workflow_name: str, tenant_id: str,
        predicate: Optional[str], now: float,
    ) -> str:
        key = (reactor_name, workflow_name, tenant_id)

        def op(cur: sqlite3.Cursor) -> str:
            cur.execute(q.UPSERT_SUBSCRIPTION, (new_id, *key, predicate, now, now))
            return cur.execute(q.SELECT_SUBSCRIPTION_ID, key).fetchone()[0]  # type: ignore[no-any-return]

        return await self._write(op)

    async def delete_subscription(self, reactor_name: str, workflow_name: str, tenant_id: str) -> bool:
        key = (reactor_name, workflow_name, tenant_id)
        return await self._write(lambda cur: cur.execute(q.DELETE_SUBSCRIPTION, key).rowcount > 0)

    async def list_subscriptions(self, tenant_id: Optional[str]) -> list[SubscriptionRecord]:
        rows = await self._read(
            lambda cur: cur.execute(q.LIST_SUBSCRIPTIONS, (tenant_id, tenant_id)).fetchall()
        )
        return [_subscription(r) for r in rows]

    async def claim_subscriptions(self, owner: str, now: float, lease_until: float) -> list[SubscriptionRecord]:
        if not await self._read(lambda cur: cur.execute(q.ANY_SUBSCRIPTION).fetchone()):
            return []  # the common case, without taking the write lock every pass

        def op(cur: sqlite3.Cursor) -> list[SubscriptionRecord]:
            cur.execute(q.CLAIM_SUBSCRIPTIONS, (owner, lease_until, owner, now))
            return [_subscription(r) for r in cur.execute(q.HELD_SUBSCRIPTIONS, (owner,)).fetchall()]

        return await self._write(op, rows=_BULK)

    async def release_subscriptions(self, owner: str) -> None:
        await self._write(lambda cur: cur.execute(q.RELEASE_SUBSCRIPTIONS, (owner,)) and None, rows=_BULK)

    async def save_subscription_progress(self, r: SubscriptionRecord) -> None:
        params = (r.last_seen_fired_at, r.last_seen_firing_id, int(r.predicate_degraded),
                  r.predicate_error_count, r.last_predicate_error, r.last_predicate_error_at,
                  r.predicate_error_firing_id, r.updated_at, r.id)
        await self._write(lambda cur: cur.execute(q.SAVE_SUBSCRIPTION_PROGRESS, params) and None)

    async def insert_firing(self, f: FiringRecord) -> None:
        params = (f.id, f.tenant_id, f.reactor_name, f.payload, f.fired_at)
        await self._write(lambda cur: cur.execute(q.INSERT_FIRING, params) and None)

    async def firings_after(
        self, tenant_id: str, reactor_name: str, after: Optional[tuple[float, str]], limit: int
    ) -> list[FiringRecord]:
        if after is None:
            sql, params = q.FIRINGS_FROM_START, (tenant_id, reactor_name, limit)
        else:
            sql, params = q.FIRINGS_AFTER, (tenant_id, reactor_name, after[0], after[0], after[1], limit)
        rows = await self._read(lambda cur: cur.execute(sql, params).fetchall())
        return [FiringRecord(*r) for r in rows]

    async def prune_firings(self, before: float) -> int:
        return await self._write(lambda cur: cur.execute(q.PRUNE_FIRINGS, (before,)).rowcount,
                                 rows=_BULK)

    async def save_reactor_state(self, tenant_id: str, reactor_name: str, state: str, now: float) -> None:
        params = (tenant_id, reactor_name, state, now)
        await self._write(lambda cur: cur.execute(q.SAVE_REACTOR_STATE, params) and None)

    async def load_reactor_state(self, tenant_id: str, reactor_name: str) -> Optional[str]:
        row = await self._read(
            lambda cur: cur.execute(q.LOAD_REACTOR_STATE, (tenant_id, reactor_name)).fetchone()
        )
        return None if row is None else row[0]

    async def save_accumulator_state(
        self, tenant_id: str, accumulator_name: str, kind: str, data: str, now: float
    ) -> None:
        sql = q.SAVE_ACCUMULATOR_STATE.format(table=q.ACCUMULATOR_TABLES[kind])
        params = (tenant_id, accumulator_name, data, now)
        await self._write(lambda cur: cur.execute(sql, params) and None)

    async def load_accumulator_state(self, tenant_id: str, accumulator_name: str, kind: str) -> Optional[str]:
        sql = q.LOAD_ACCUMULATOR_STATE.format(table=q.ACCUMULATOR_TABLES[kind])
        row = await self._read(lambda cur: cur.execute(sql, (tenant_id, accumulator_name)).fetchone())
        return None if row is None else row[0]

    async def reactor_tenants(self) -> list[str]:
        rows = await self._read(lambda cur: cur.execute(q.REACTOR_TENANTS).fetchall())
        return [r[0] for r in rows]


# --------------------------------------------------------------------------------------
# Functions run in the connection's thread.


def _prepare(conn: sqlite3.Connection, sharing: WorkSharing) -> None:
    """Check the file is a SQLite database, set pragmas, apply pending migrations, and
    check (or record) how its runners share work."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # "file is not a database"
    _check_not_truncated(conn)
    conn.execute("PRAGMA journal_mode = WAL").fetchone()
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = OFF")
    cur = conn.cursor()
    cur.execute("BEGIN IMMEDIATE")
    try:
        cur.execute(q.CREATE_VERSION_TABLE)
        current = cur.execute(q.GET_VERSION).fetchone()[0] or 0
        latest = MIGRATIONS_LATEST
        if current > latest:
            raise sqlite3.DatabaseError(
                f"schema version {current} is newer than this cloaca understands ({latest})"
            )
        for version, script in q.MIGRATIONS:
            if version > current:
                for statement in _statements(script):
                    cur.execute(statement)
                cur.execute(q.SET_VERSION, (version,))
        _check_sharing(cur, sharing)
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise


MIGRATIONS_LATEST = max(v for v, _ in q.MIGRATIONS)
_SHARING_NAMES = {WorkSharing.BY_RUN: "run", WorkSharing.BY_TASK: "task"}


def _check_sharing(cur: sqlite3.Cursor, sharing: WorkSharing) -> None:
    """Record how the file's runners share work, with the index of claimable tasks that
    only sharing by task reads; refuse the other way while runs are unfinished (a runner
    sharing by task would take over the Running tasks of a runner sharing by run, and run
    them twice)."""
    cur.execute(q.CREATE_SETTINGS_TABLE)
    row = cur.execute(q.GET_SETTING, ("work_sharing",)).fetchone()
    wanted = _SHARING_NAMES[sharing]
    if row is not None and row[0] != wanted and cur.execute(q.ANY_UNFINISHED_RUN).fetchone():
        raise sqlite3.DatabaseError(
            f"its runners share work by {row[0]} (URL parameter ?sharing={row[0]}), and it has "
            f"unfinished runs; open it with ?sharing={row[0]}, or switch to ?sharing={wanted} "
            "once every runner is stopped and no run is left unfinished"
        )
    if row is None or row[0] != wanted:
        cur.execute(q.SET_SETTING, ("work_sharing", wanted))
    cur.execute(q.CREATE_CLAIM_INDEX if sharing is WorkSharing.BY_TASK else q.DROP_CLAIM_INDEX)


def _check_not_truncated(conn: sqlite3.Connection) -> None:
    """Refuse a database file cut short: SQLite reads the missing end of a page as zeros
    and would go on writing to it. Every database file is whole pages, as many as its
    header says, unless a write-ahead log holds pages not yet copied back."""
    path = next(row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main")
    try:
        size = os.path.getsize(path)
    except OSError:
        return  # no file (a temporary database): nothing to check
    wal = os.path.getsize(path + "-wal") if os.path.exists(path + "-wal") else 0
    if size == 0:
        return  # a new database
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    if size % page_size or (wal == 0 and size < pages * page_size):
        raise sqlite3.DatabaseError(
            f"database disk image is malformed: the file is truncated ({size} bytes, "
            f"{pages} pages of {page_size} bytes expected)"
        )


def _existing_only(path: str) -> tuple[str, Optional[str]]:
    """How to open `path` (a file path or a `file:` URI) without ever creating it: the URI
    to connect to (`mode=rw`), and the file that must exist (None for an in-memory URI)."""
    if not path.startswith("file:"):
        return "file://" + urllib.parse.quote(os.path.abspath(path)) + "?mode=rw", path
    parts = urllib.parse.urlsplit(path)
    params = dict(urllib.parse.parse_qsl(parts.query))
    file = urllib.parse.unquote(parts.path)
    if file in ("", ":memory:") or params.get("mode") == "memory":
        return path, None
    if "mode" not in params:  # (an explicit mode is the caller's choice)
        base, _, query = path.split("#", 1)[0].partition("?")
        path = base + "?" + "&".join(filter(None, [query, "mode=rw"]))
    return path, file


def _open_inline(path: str) -> sqlite3.Connection:
    """The loop thread's connection: never waits for a lock, never checkpoints."""
    conn = sqlite3.connect(path, isolation_level=None, uri=path.startswith("file:"),
                           check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 0")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    return conn


def _checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()


def _ignore_result(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # a failed passive checkpoint is retried by the next one


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _run_read(conn: sqlite3.Connection, op: Callable[[sqlite3.Cursor], T]) -> T:
    return op(conn.cursor())


def _run_snapshot(conn: sqlite3.Connection, op: Callable[[sqlite3.Cursor], T]) -> T:
    cur = conn.cursor()
    cur.execute("BEGIN")
    try:
        return op(cur)
    finally:
        cur.execute("COMMIT")


class _Creation(Rows):
    """`SQLiteStore.create_execution`'s write of a run (not a fire's) and its tasks."""

    def rows(self) -> tuple[Statements, Any, Optional[str], Iterable[str]]:
        return _creation_rows(*self.args), True, None, ()


def _create_run(
    execution: ExecutionRecord, tasks: Sequence[TaskRecord], owner: str, lease_until: float,
    holder: Optional[str], cur: sqlite3.Cursor,
) -> bool:
    apply_rows(cur, _creation_rows(execution, tasks, owner, lease_until, holder))
    return True


def _creation_rows(
    execution: ExecutionRecord, tasks: Sequence[TaskRecord], owner: str, lease_until: float,
    holder: Optional[str],
) -> Statements:
    return [
        (q.INSERT_EXECUTION, [_execution_row(execution) + (owner, lease_until)]),
        (q.INSERT_TASK, [_task_row(t) + _held(t, holder, lease_until) for t in tasks]),
    ]


def _create_fired(
    execution: ExecutionRecord, fire: Optional[FireRequest], link_fire_id: Optional[str],
    creation: Op, cur: sqlite3.Cursor,
) -> bool:
    """`SQLiteStore.create_execution`'s write of a run a trigger or cron fire started:
    False, with nothing written, for a duplicate of a fire still open."""
    if fire is not None:
        if fire.deduplicate and cur.execute(
            q.OPEN_FIRE_EXISTS, (fire.trigger_name, fire.context_hash)
        ).fetchone():
            return False
        _insert_fire(cur, fire.trigger_name, fire.context_hash, execution.id, None,
                     execution.started_at)
    if link_fire_id is not None:
        cur.execute(q.LINK_FIRE, (execution.id, execution.started_at, link_fire_id))
    return creation(cur)


class _Progress(Rows):
    """`SQLiteStore.save_progress`'s write."""

    def rows(self) -> tuple[Statements, Any, Optional[str], Iterable[str]]:
        tasks, finished, owner = self.args
        return _progress_rows(tasks, finished), None, owner, () if owner is None else runs_written(tasks, finished)


def _save_progress(
    tasks: Sequence[TaskRecord], finished: Optional[ExecutionRecord], owner: Optional[str],
    cur: sqlite3.Cursor,
) -> None:
    if owner is not None:
        for execution_id in runs_written(tasks, finished):
            check_held(execution_id, owner, cur.execute(q.SELECT_RUN_OWNER, (execution_id,)).fetchone())
    apply_rows(cur, _progress_rows(tasks, finished))


def _progress_rows(tasks: Sequence[TaskRecord], finished: Optional[ExecutionRecord]) -> Statements:
    statements: list[tuple[str, Sequence[tuple[Any, ...]]]] = [(q.UPDATE_TASK, [_task_update_row(t) for t in tasks])]
    if finished is not None:
        statements.append((q.FINISH_EXECUTION, [(
            finished.status, finished.final_context, finished.error_message, finished.completed_at,
            finished.id,
        )]))
        statements.append((q.CLOSE_FIRES_OF_RUN, [(finished.completed_at, finished.completed_at, finished.id)]))
    return statements


def _insert_fire(
    cur: sqlite3.Cursor, trigger_name: str, context_hash: str, execution_id: Optional[str],
    completed_at: Optional[float], now: float,
) -> None:
    cur.execute(
        q.INSERT_TRIGGER_FIRE,
        (time_ordered_id(), context_hash, now, execution_id, completed_at, now, now, trigger_name),
    )


def _load_run(
    cur: sqlite3.Cursor, execution_id: str, since: Optional[int] = None, also: Sequence[str] = (),
) -> Optional[StoredRun]:
    """A run with its version and its task rows: all of them, or with `since` only those
    changed after that version and those named in `also`."""
    row = cur.execute(q.SELECT_EXECUTION, (execution_id,)).fetchone()
    if row is None:
        return None
    if since is None:
        rows = cur.execute(q.SELECT_TASKS, (execution_id,)).fetchall()
    else:
        rows = cur.execute(q.SELECT_TASKS_CHANGED_SINCE,
                           (execution_id, since, json.dumps(list(also)))).fetchall()
    return StoredRun(ExecutionRecord(*row[:-1]), [TaskRecord(*r) for r in rows], row[-1])


def _held(task: TaskRecord, owner: Optional[str], lease_until: float) -> tuple[Any, Any]:
    """(holder, lease until) of a task row as written: `owner`'s if it is Running, else nobody's."""
    if task.status == "Running" and owner is not None:
        return owner, lease_until
    return None, None


def _claim(
    cur: sqlite3.Cursor, expired: bool, pick: dict[str, Any], claim: dict[str, Any]
) -> list[TaskRecord]:
    """Claim the tasks `pick` finds, Ready ones or (`expired`) Running ones whose lease
    expired, bumping the versions of the runs taken over; the claimed rows."""
    keys = cur.execute(q.PICK_EXPIRED_TASKS if expired else q.PICK_READY_TASKS, pick).fetchall()
    if not keys:
        return []
    if expired:
        cur.execute(q.BUMP_RUN_VERSIONS, (json.dumps(list(dict.fromkeys(k[0] for k in keys))),))
    params = {**claim, "take_over": expired, "keys": json.dumps([list(k) for k in keys])}
    return [TaskRecord(*row) for row in cur.execute(q.CLAIM_TASKS, params).fetchall()]


def _claimed_work(
    cur: sqlite3.Cursor, claimed: dict[str, list[TaskRecord]], known: Mapping[str, int]
) -> list[ClaimedWork]:
    """The claimed rows by run, each with what its claimer needs to read back: nothing for
    a run whose version it knows, the rows changed since for an older known version, else
    the whole run."""
    if not claimed:
        return []
    ids = json.dumps(list(claimed))
    versions = dict(cur.execute(q.SELECT_VERSIONS, (ids,)).fetchall())
    work = []
    for execution_id, tasks in claimed.items():
        version = versions.get(execution_id)
        run = None
        if version is not None and known.get(execution_id) != version:
            run = _load_run(cur, execution_id, known.get(execution_id))
        work.append(ClaimedWork(execution_id, tasks, run))
    return work


def _execution_row(e: ExecutionRecord) -> tuple[Any, ...]:
    return (e.id, e.workflow_name, e.workflow_version, e.status, e.input_context, e.started_at,
            e.final_context, e.error_message, e.completed_at, e.trace_context)


def _task_row(t: TaskRecord) -> tuple[Any, ...]:
    return (t.execution_id, t.task_name, t.status, t.attempt, t.not_before, t.started_at,
            t.completed_at, t.output_context, t.error_message, t.finish_seq, t.attempt_base,
            t.traceback)


def _take_runs(cur: sqlite3.Cursor, ids: list[str], take: str, owner: str, lease_until: float) -> list[StoredRun]:
    """Give the runs `ids` to `owner` until `lease_until` with statement `take`; as now stored."""
    runs = []
    for execution_id in ids:
        cur.execute(take, (owner, lease_until, execution_id))
        run = _load_run(cur, execution_id)
        if run is not None:
            runs.append(run)
    return runs


@functools.lru_cache(maxsize=32)
def _json_names(names: tuple[str, ...]) -> str:
    """The JSON array of names a claim binds (the same few lists, claim after claim)."""
    return json.dumps(names)


def _task_update_row(t: TaskRecord) -> tuple[Any, ...]:
    return (t.status, t.attempt, t.not_before, t.started_at, t.completed_at, t.output_context,
            t.error_message, t.finish_seq, t.attempt_base, t.traceback, t.execution_id,
            t.task_name)


def _trigger(row: tuple[Any, ...]) -> TriggerScheduleRecord:
    record = TriggerScheduleRecord(*row)
    record.allow_concurrent = bool(record.allow_concurrent)
    record.enabled = bool(record.enabled)
    return record


def _cron_row(r: CronScheduleRecord) -> tuple[Any, ...]:
    return (r.id, r.workflow_name, r.instance_name, r.cron_expression, r.timezone, int(r.enabled),
            r.catchup_policy, r.params, r.next_run_at, r.last_run_at, r.created_at, r.updated_at)


def _cron(row: tuple[Any, ...]) -> CronScheduleRecord:
    record = CronScheduleRecord(*row)
    record.enabled = bool(record.enabled)
    return record


def _subscription(row: tuple[Any, ...]) -> SubscriptionRecord:
    record = SubscriptionRecord(*row)
    record.enabled = bool(record.enabled)
    record.predicate_degraded = bool(record.predicate_degraded)
    return record
