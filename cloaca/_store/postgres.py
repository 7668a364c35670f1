"""The PostgreSQL store (asyncpg): several runner processes, on several hosts, share one database.

Work is shared by task (`WorkSharing.BY_TASK`): any runner claims any ready task of any run
(`claim_tasks`, `FOR UPDATE SKIP LOCKED`, so two runners never claim the same task) under a
lease it renews, and takes over tasks whose lease expired. Each scheduling step of a run is
one compare-and-set on the run's version (`commit_step`), so a step computed from a stale
view of the run, or by a runner whose task was taken over, is refused and nothing is
completed twice; the refused runner then computes its step again under the run's row lock
from the rows changed since its version (`commit_step_locked`). New work and ended runs
are announced with NOTIFY on a channel per schema; runners LISTEN on one dedicated
connection and poll as a fallback.

Every store call is one statement where the SQL allows it (so one round trip, atomic
without an explicit transaction), or one transaction otherwise. The writes of runs on the
hot path (new runs, scheduling steps) are group-committed (`postgres_group`): those that
concurrent callers make at the same time go out as one statement.

With `schema`, every table lives in that PostgreSQL schema: it is created if missing, the
migrations run inside it, and every pooled connection has it as its `search_path`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import urllib.parse
import uuid
from typing import Any, Callable, Mapping, Optional, Sequence

import asyncpg

from .._cancelling import cancel_and_wait
from .._ids import time_ordered_id
from .._tenancy import RESERVED_SCHEMAS, check_identifier
from . import postgres_queries as q
from .base import (
    ClaimedWork,
    ClaimStore,
    CronScheduleRecord,
    CronSlotClaim,
    CronStats,
    ExecutionRecord,
    FireRequest,
    FiringRecord,
    Notice,
    NoticeStore,
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
from .postgres_group import (
    DEFAULT_GROUPS_IN_FLIGHT,
    GroupCommit,
    NewRun,
    Step,
    write_group,
)

log = logging.getLogger("cloaca")

POOL_MIN_SIZE = 1
DEFAULT_POOL_SIZE = 10
CONNECT_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 10.0
RELISTEN_DELAY_SECONDS = 1.0


CONNECTION_ERRORS = (
    OSError, asyncio.TimeoutError, TimeoutError, asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError, asyncpg.CrashShutdownError, asyncpg.CannotConnectNowError,
)
"""What a lost, refused or stalled connection raises: class 08, the server shutting down
or starting (57P01-57P03)..."""
CONNECTION_STATE_ERRORS = (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError)
"""...and, as these exact classes (their subclasses are misuse: bad arguments, bad
configuration), the client's "connection is closed" and "cannot switch to state"."""


class SchemaTooNew(Exception):
    """The database was migrated by a newer cloaca than this one."""


class PostgresStore(Store, ClaimStore, NoticeStore):
    """A PostgreSQL database (optionally one schema of it) shared by any number of runners."""

    work_sharing = WorkSharing.BY_TASK

    def __init__(self, url: str, schema: Optional[str] = None, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        if schema is not None:
            check_identifier("schema", schema, RESERVED_SCHEMAS)
        self.url = url
        self.schema = schema
        self.pool_size = pool_size
        # One channel per schema (a hash: channel names are limited to 63 bytes).
        self.channel = "cloaca_" + hashlib.sha256((schema or "").encode()).hexdigest()[:16]
        self._listener: Optional[asyncio.Task[None]] = None
        self.target = describe_url(url)
        self.description = f"PostgreSQL database {self.target}" + (
            f", schema '{schema}'" if schema is not None else ""
        )
        self._secrets = url_secrets(url)
        self._pool: Optional[asyncpg.Pool] = None
        # The writes of runs are group-committed on connections of their own (set up for
        # that one statement: q.GROUP_WRITE_SETTINGS), a third of the pool's at most three,
        # one group in flight on each; the other calls (claims, reads) have the rest.
        self._group_connections = max(1, min(DEFAULT_GROUPS_IN_FLIGHT, pool_size // 3))
        self._group_pool: Optional[asyncpg.Pool] = None
        self._group = GroupCommit(self._require_group_pool, self.channel, self.unavailable,
                                  groups_in_flight=self._group_connections)

    # lifecycle ----------------------------------------------------------------------
    def _server_settings(self) -> dict[str, str]:
        return {"search_path": q.quote_ident(self.schema)} if self.schema is not None else {}

    async def open(self) -> None:
        try:
            self._pool = await self._create_pool(
                max(1, self.pool_size - self._group_connections), self._server_settings()
            )
            async with self._pool.acquire() as conn:
                async with conn.transaction():
                    await apply_migrations(conn, self.schema)
            self._group_pool = await self._create_pool(
                self._group_connections, {**self._server_settings(), **q.GROUP_WRITE_SETTINGS}
            )
        except SchemaTooNew as exc:
            await self.close()
            raise RuntimeError(f"Cannot open {self.description}: {exc}") from None
        except Exception as exc:
            await self.close()
            raise RuntimeError(
                f"Cannot open {self.description}: {scrub(describe_error(exc), self._secrets)}"
            ) from None

    async def _create_pool(self, size: int, settings: dict[str, str]) -> asyncpg.Pool:
        return await asyncpg.create_pool(
            self.url, min_size=POOL_MIN_SIZE, max_size=size, server_settings=settings,
            timeout=CONNECT_TIMEOUT_SECONDS, reset=reset_released,
        )

    async def close(self) -> None:
        if self._listener is not None:
            await cancel_and_wait([self._listener], f"closing the LISTEN of {self.description}")
            self._listener = None
        pools = [p for p in (self._group_pool, self._pool) if p is not None]
        self._pool = self._group_pool = None
        for pool in pools:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):  # not wait_for: see subscriptions
                    await pool.close()
            except (TimeoutError, asyncpg.PostgresError, OSError):
                pool.terminate()

    def unavailable(self, exc: BaseException) -> bool:
        # InternalClientError: a connection the server closed while it sat idle in the pool
        # fails its next operation that way ("cannot switch to state ...") when the close
        # has not been processed yet; the pool discards it on release.
        return isinstance(exc, CONNECTION_ERRORS) or type(exc) in CONNECTION_STATE_ERRORS

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.description} is closed")
        return self._pool

    def _require_group_pool(self) -> asyncpg.Pool:
        if self._group_pool is None:
            raise RuntimeError(f"{self.description} is closed")
        return self._group_pool

    # runs ---------------------------------------------------------------------------
    async def create_execution(
        self,
        execution: ExecutionRecord,
        tasks: Sequence[TaskRecord],
        owner: str,
        lease_until: float,
        fire: Optional[FireRequest] = None,
        link_fire_id: Optional[str] = None,
    ) -> bool:
        new_run = NewRun(execution, tasks, owner, lease_until, link_fire_id)
        if fire is None:
            await self._group.write(new_run)  # written with concurrent calls' writes
            return True
        return await self._create_fired_execution(new_run, fire)

    async def _create_fired_execution(self, new_run: NewRun, fire: FireRequest) -> bool:
        execution = new_run.execution
        async with self._require_pool().acquire() as conn:
            async with conn.transaction():
                if fire.deduplicate:
                    # Dedup is decided here, race-free across processes: a transaction-level
                    # advisory lock on (schema, trigger, context hash) serialises the check
                    # and the insert of identical fires; the check runs after the lock is
                    # granted, so it sees the fire of whoever held it (committed). A partial
                    # unique index could not express the contract: an open fire blocks a
                    # deduplicated one whether or not that open fire was itself deduplicated.
                    await conn.execute(
                        q.ADVISORY_XACT_LOCK,
                        f"{q.DEDUP_LOCK_KEY}{self.schema or ''}:{fire.trigger_name}:{fire.context_hash}",
                    )
                    if await conn.fetchval(q.OPEN_FIRE_EXISTS, fire.trigger_name, fire.context_hash):
                        return False
                await conn.execute(
                    q.INSERT_TRIGGER_FIRE, time_ordered_id(), fire.context_hash,
                    execution.started_at, execution.id, None, fire.trigger_name,
                )
                await write_group(conn, [new_run], self.channel)
        return True

    async def save_progress(
        self, tasks: Sequence[TaskRecord], finished: Optional[ExecutionRecord] = None,
        owner: Optional[str] = None,
    ) -> None:
        if finished is None:
            if not tasks:
                return
            sql, params = q.UPDATE_TASKS, _task_arrays(tasks)
        else:
            sql, params = q.SAVE_AND_FINISH, (
                *_task_arrays(tasks), finished.status, finished.final_context,
                finished.error_message, finished.completed_at, finished.id,
            )
        pool = self._require_pool()
        if owner is None:
            await pool.execute(sql, *params)
            return
        ids = sorted(runs_written(tasks, finished))
        async with pool.acquire() as conn:
            async with conn.transaction():
                held = {r["id"]: r for r in await conn.fetch(q.LOCK_RUN_OWNERS, ids)}
                for execution_id in ids:
                    row = held.get(execution_id)
                    check_held(execution_id, owner, None if row is None else (row["owner"], row["status"]))
                await conn.execute(sql, *params)

    async def claim_orphans(
        self, owner: str, now: float, lease_until: float, workflow_names: Sequence[str]
    ) -> list[StoredRun]:
        if not workflow_names:
            return []
        async with self._require_pool().acquire() as conn:
            rows = await conn.fetch(q.CLAIM_ORPHANS, now, list(workflow_names), owner, lease_until)
            if not rows:
                return []
            runs = {r["id"]: StoredRun(ExecutionRecord(*r)) for r in rows}
            # Read after the claim committed: these runs are ours now, nobody else writes them.
            for t in await conn.fetch(q.SELECT_TASKS_OF, list(runs)):
                runs[t["execution_id"]].tasks.append(TaskRecord(*t))
        return list(runs.values())

    async def renew_leases(self, owner: str, lease_until: float) -> None:
        await self._require_pool().execute(q.RENEW_LEASES, lease_until, owner)

    async def release_leases(self, owner: str) -> None:
        pool = self._require_pool()
        async with pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute(q.LOCK_RUNS_OF_OWNER, owner)
                released = await conn.fetchval(q.RELEASE_LEASES, owner)
        if released:
            await pool.execute(q.NOTIFY, self.channel, "w")

    async def cancel_execution(self, execution_id: str, now: float) -> Optional[bool]:
        row = await self._require_pool().fetchrow(q.CANCEL_EXECUTION, execution_id, now, self.channel)
        if row[2] is None:
            return None
        return bool(row[0])

    async def reset_for_retry(
        self, execution_id: str, owner: Optional[str], now: float, lease_until: Optional[float]
    ) -> Optional[StoredRun]:
        async with self._require_pool().acquire() as conn:
            async with conn.transaction():
                status = await conn.fetchval(q.LOCK_RUN_STATUS, execution_id)
                if status is None:
                    return None
                check_retryable(execution_id, status)
                await conn.execute(q.RESET_TASKS_FOR_RETRY, execution_id)
                await conn.execute(q.REOPEN_EXECUTION, execution_id, owner, lease_until,
                                   reopened_status(owner, self.work_sharing))
        return await self.get_run(execution_id)

    async def get_run(self, execution_id: str) -> Optional[StoredRun]:
        runs = await self._read_runs([execution_id])
        return runs[0] if runs else None

    async def _read_runs(
        self, execution_ids: Sequence[str], since: Optional[Mapping[str, int]] = None,
        also: Sequence[str] = (),
    ) -> list[StoredRun]:
        """Runs with their versions, read in one snapshot: every task row, or for a run in
        `since` only the rows that changed after that version and the tasks named `also`."""
        since = since or {}
        rows = await self._require_pool().fetch(
            q.SELECT_RUNS, list(execution_ids), [since.get(i, -1) for i in execution_ids], list(also),
        )
        width = len(q.EXECUTION_COLUMNS.split(","))
        runs: dict[str, StoredRun] = {}
        for r in rows:
            run = runs.get(r[0])
            if run is None:
                run = runs[r[0]] = StoredRun(ExecutionRecord(*r[:width]), [], r[width])
            if r[width + 1] is not None:
                run.tasks.append(TaskRecord(*r[width + 1:]))
        return [runs[i] for i in execution_ids if i in runs]

    # runs shared by task ------------------------------------------------------------
    async def claim_pending_runs(
        self, owner: str, now: float, lease_until: float, workflow_names: Sequence[str], limit: int,
    ) -> list[StoredRun]:
        if nothing_to_claim(workflow_names, limit, None):
            return []
        rows = await self._require_pool().fetch(
            q.CLAIM_PENDING, now, list(workflow_names), owner, lease_until, limit)
        # Read after the claim committed: nobody else starts these runs while the lease holds.
        return await self._read_runs([r[0] for r in rows]) if rows else []

    async def claim_tasks(
        self, owner: str, now: float, lease_until: float, workflow_names: Sequence[str],
        limit: int, take_over: bool, known_versions: Mapping[str, int],
        task_names: Optional[Sequence[str]] = None,
    ) -> list[ClaimedWork]:
        if nothing_to_claim(workflow_names, limit, task_names):
            return []
        pool = self._require_pool()
        names = list(workflow_names)
        only = None if task_names is None else list(task_names)
        rows = []
        if take_over:
            rows = await pool.fetch(q.TAKE_OVER_TASKS, now, owner, names, limit, lease_until, only)
        if len(rows) < limit:
            rows += await pool.fetch(
                q.CLAIM_READY_TASKS, now, owner, names, limit - len(rows), lease_until, only
            )
        if not rows:
            return []
        claimed: dict[str, list[TaskRecord]] = {}
        versions: dict[str, int] = {}
        for r in rows:
            execution_id = r["execution_id"]
            claimed.setdefault(execution_id, []).append(TaskRecord(*r[:-1]))
            versions[execution_id] = max(r["version"], versions.get(execution_id, r["version"]))
        # The claimed rows are ours until the lease ends: what changed since the version
        # the claimer holds, if any, is read after the claim committed.
        stale = [i for i in claimed if known_versions.get(i) != versions[i]]
        runs = {run.execution.id: run for run in await self._read_runs(stale, known_versions)} if stale else {}
        return [ClaimedWork(i, tasks, runs.get(i)) for i, tasks in claimed.items()]

    async def commit_step(
        self, execution_id: str, version: int, owner: str, lease_until: float,
        tasks: Sequence[TaskRecord], finished: Optional[ExecutionRecord] = None,
    ) -> bool:
        # The end of a run is announced to the other runners unless `owner` started it: the
        # starter waits for its end, the others hold a run only while they execute its
        # tasks, and at its end none does (one that still does, its task taken over, or
        # that waits for the run's result, finds out at its fallback check).
        step = Step(execution_id, version, owner, lease_until, tasks, finished)
        return bool(await self._group.write(step))  # written with concurrent calls' writes

    async def commit_step_locked(
        self, execution_id: str, since_version: int, task_names: Sequence[str], owner: str,
        lease_until: float, compute: StepFunction,
    ) -> bool:
        async with self._require_pool().acquire() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(q.LOCK_RUN_FOR_STEP, execution_id)
                if row is None:
                    return False
                stored = StoredRun(ExecutionRecord(*tuple(row)[:-1]), [], row["version"])
                changed = await conn.fetch(
                    q.SELECT_TASKS_CHANGED_SINCE, [execution_id], [since_version], list(task_names)
                )
                stored.tasks = [TaskRecord(*t) for t in changed]
                step = compute(stored)
                if step is None:
                    return False
                tasks, finished = step
                step_write = Step(execution_id, stored.version, owner, lease_until, tasks, finished)
                [written] = await write_group(conn, [step_write], self.channel)
                return bool(written)

    async def renew_task_leases(
        self, owner: str, tasks: Sequence[tuple[str, str]], lease_until: float
    ) -> None:
        if tasks:
            await self._require_pool().execute(
                q.RENEW_TASK_LEASES, lease_until, owner, [e for e, _ in tasks], [t for _, t in tasks]
            )

    async def ended_runs(self, execution_ids: Sequence[str]) -> list[str]:
        if not execution_ids:
            return []
        return [r[0] for r in await self._require_pool().fetch(q.ENDED_RUNS, list(execution_ids))]

    async def listen(self, on_notice: Callable[[Notice], None]) -> bool:
        self._require_pool()
        connected = asyncio.get_running_loop().create_future()
        self._listener = asyncio.get_running_loop().create_task(self._listen_forever(on_notice, connected))
        return await connected

    async def _listen_forever(self, on_notice: Callable[[Notice], None], connected: asyncio.Future[bool]) -> None:
        """Keep one connection LISTENing; reconnect after a drop (notices meanwhile are lost)."""
        def deliver(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            on_notice(Notice(ended_run=payload[1:]) if payload.startswith("d") else Notice(work=True))

        while True:
            conn: Optional[asyncpg.Connection] = None
            try:
                conn = await asyncpg.connect(
                    self.url, server_settings=self._server_settings(), timeout=CONNECT_TIMEOUT_SECONDS
                )
                dropped = asyncio.get_running_loop().create_future()
                conn.add_termination_listener(lambda _c: dropped.done() or dropped.set_result(None))
                await conn.add_listener(self.channel, deliver)
                if not connected.done():
                    connected.set_result(True)
                else:
                    on_notice(Notice(work=True))  # notices may have been missed while away
                await dropped
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not connected.done():
                    connected.set_result(False)
                log.warning("cloaca: LISTEN on %s failed (polling meanwhile): %s", self.description,
                            scrub(describe_error(exc), self._secrets))
            finally:
                if conn is not None:
                    conn.terminate()  # no I/O: a close on a broken connection could raise here
            await asyncio.sleep(RELISTEN_DELAY_SECONDS)

    async def list_executions(
        self, workflow_name: Optional[str], status: Optional[str], limit: int, offset: int
    ) -> list[ExecutionRecord]:
        given, filters = history_filters(workflow_name, status)
        rows = await self._require_pool().fetch(q.LIST_EXECUTIONS[given], *filters, limit, offset)
        return [ExecutionRecord(*r) for r in rows]

    async def count_executions(self, workflow_name: Optional[str]) -> dict[str, int]:
        if workflow_name is None:
            rows = await self._require_pool().fetch(q.COUNT_EXECUTIONS)
        else:
            rows = await self._require_pool().fetch(q.COUNT_EXECUTIONS_OF_WORKFLOW, workflow_name)
        return {status: count for status, count in rows}

    # triggers -----------------------------------------------------------------------
    async def upsert_trigger_schedule(
        self, trigger_name: str, workflow_name: str, poll_interval_ms: int,
        allow_concurrent: bool, now: float,
    ) -> TriggerScheduleRecord:
        row = await self._require_pool().fetchrow(
            q.UPSERT_TRIGGER, str(uuid.uuid4()), trigger_name, workflow_name, poll_interval_ms,
            bool(allow_concurrent), now,
        )
        return TriggerScheduleRecord(*row)

    async def list_trigger_schedules(
        self, enabled_only: bool, limit: int, offset: int
    ) -> list[TriggerScheduleRecord]:
        sql = q.LIST_ENABLED_TRIGGERS if enabled_only else q.LIST_TRIGGERS
        return [TriggerScheduleRecord(*r) for r in await self._require_pool().fetch(sql, limit, offset)]

    async def get_trigger_schedule(self, trigger_name: str) -> Optional[TriggerScheduleRecord]:
        row = await self._require_pool().fetchrow(q.SELECT_TRIGGER, trigger_name)
        return None if row is None else TriggerScheduleRecord(*row)

    async def set_trigger_enabled(self, trigger_name: str, enabled: bool, now: float) -> None:
        await self._require_pool().execute(q.SET_TRIGGER_ENABLED, bool(enabled), now, trigger_name)

    async def record_trigger_polls(self, polls: Sequence[tuple[str, float]]) -> None:
        if polls:
            await self._require_pool().execute(
                q.RECORD_TRIGGER_POLLS, [name for name, _ in polls], [at for _, at in polls]
            )

    async def record_unlaunched_fire(self, trigger_name: str, context_hash: str, now: float) -> None:
        await self._require_pool().execute(
            q.INSERT_TRIGGER_FIRE, time_ordered_id(), context_hash, now, None, now, trigger_name
        )

    async def open_trigger_fires(self, now: float) -> list[OpenFire]:
        return [OpenFire(*r) for r in await self._require_pool().fetch(q.OPEN_TRIGGER_FIRES, now)]

    async def trigger_history(
        self, trigger_name: str, limit: int, offset: int
    ) -> list[ScheduleExecutionRecord]:
        rows = await self._require_pool().fetch(q.TRIGGER_HISTORY, trigger_name, limit, offset)
        return [ScheduleExecutionRecord(*r) for r in rows]

    # cron ---------------------------------------------------------------------------
    async def create_cron_schedule(self, record: CronScheduleRecord) -> bool:
        return await self._require_pool().fetchval(q.INSERT_CRON, *_cron_row(record)) is not None

    async def upsert_cron_instance(self, record: CronScheduleRecord) -> CronScheduleRecord:
        key = (record.workflow_name, record.instance_name)
        async with self._require_pool().acquire() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(q.SELECT_CRON_INSTANCE_FOR_UPDATE, *key)
                if row is None:
                    if await conn.fetchval(q.INSERT_CRON, *_cron_row(record)) is not None:
                        return record
                    # A concurrent runner inserted it first (ON CONFLICT waited for its
                    # commit): update that row instead.
                    row = await conn.fetchrow(q.SELECT_CRON_INSTANCE_FOR_UPDATE, *key)
                    if row is None:  # pragma: no cover - the conflict was on the id
                        raise RuntimeError(f"cron schedule id {record.id} is already taken")
                existing = CronScheduleRecord(*row)
                if (existing.cron_expression, existing.timezone) != (record.cron_expression, record.timezone):
                    existing.next_run_at = record.next_run_at
                existing.cron_expression, existing.timezone = record.cron_expression, record.timezone
                existing.params, existing.updated_at = record.params, record.updated_at
                await conn.execute(
                    q.UPDATE_CRON_INSTANCE, existing.cron_expression, existing.timezone,
                    existing.params, existing.next_run_at, existing.updated_at, existing.id,
                )
                return existing

    async def get_cron_schedule(self, schedule_id: str) -> Optional[CronScheduleRecord]:
        row = await self._require_pool().fetchrow(q.SELECT_CRON, schedule_id)
        return None if row is None else CronScheduleRecord(*row)

    async def list_cron_schedules(
        self, enabled_only: bool, limit: int, offset: int
    ) -> list[CronScheduleRecord]:
        rows = await self._require_pool().fetch(q.LIST_CRON, bool(enabled_only), limit, offset)
        return [CronScheduleRecord(*r) for r in rows]

    async def update_cron_schedule(
        self, schedule_id: str, cron_expression: str, timezone: str, next_run_at: float, now: float
    ) -> bool:
        found = await self._require_pool().fetchval(
            q.UPDATE_CRON, cron_expression, timezone, next_run_at, now, schedule_id
        )
        return found is not None

    async def set_cron_enabled(self, schedule_id: str, enabled: bool, now: float) -> None:
        await self._require_pool().execute(q.SET_CRON_ENABLED, bool(enabled), now, schedule_id)

    async def delete_cron_schedule(self, schedule_id: str) -> None:
        await self._require_pool().execute(q.DELETE_CRON, schedule_id)

    async def due_cron_schedules(self, now: float) -> list[CronScheduleRecord]:
        return [CronScheduleRecord(*r) for r in await self._require_pool().fetch(q.DUE_CRON, now)]

    async def next_cron_run_at(self) -> Optional[float]:
        return await self._require_pool().fetchval(q.NEXT_CRON_RUN)

    async def claim_cron_slots(
        self, claim: CronSlotClaim, now: float
    ) -> Optional[list[tuple[str, float]]]:
        async with self._require_pool().acquire() as conn:
            async with conn.transaction():
                advanced = await conn.fetchval(
                    q.ADVANCE_CRON, claim.new_next_run_at, now, claim.schedule_id,
                    claim.expected_next_run_at,
                )
                if advanced is None:
                    return None
                if claim.skipped:
                    await conn.execute(
                        q.INSERT_CRON_FIRES, [time_ordered_id() for _ in claim.skipped],
                        claim.schedule_id, now, now, "skipped", list(claim.skipped),
                    )
                if not claim.launch:
                    return []
                ids = [time_ordered_id() for _ in claim.launch]
                rows = await conn.fetch(
                    q.INSERT_CRON_FIRES, ids, claim.schedule_id, now, None, None, list(claim.launch),
                )
        inserted = {r["id"] for r in rows}
        return [(fire_id, slot) for fire_id, slot in zip(ids, claim.launch) if fire_id in inserted]

    async def close_schedule_fire(
        self, fire_id: str, now: float, outcome: str, error: Optional[str]
    ) -> None:
        await self._require_pool().execute(q.CLOSE_SCHEDULE_FIRE, now, outcome, error, fire_id)

    async def cron_history(
        self, schedule_id: str, limit: int, offset: int
    ) -> list[ScheduleExecutionRecord]:
        rows = await self._require_pool().fetch(q.CRON_HISTORY, schedule_id, limit, offset)
        return [ScheduleExecutionRecord(*r) for r in rows]

    async def schedule_stats(self, since: float, lost_before: float) -> CronStats:
        row = await self._require_pool().fetchrow(q.SCHEDULE_STATS, lost_before, since)
        return CronStats(row[0], row[1], row[2])

    async def lost_cron_fires(
        self, lost_before: float, oldest: float, max_attempts: int, now: float
    ) -> list[tuple[ScheduleExecutionRecord, CronScheduleRecord]]:
        width = len(q.FIRE_COLUMNS.split(","))
        async with self._require_pool().acquire() as conn:
            async with conn.transaction():
                await conn.execute(q.CLOSE_ENDED_CRON_FIRES, now)
                await conn.execute(q.ABANDON_LOST_CRON_FIRES, now, lost_before, oldest, max_attempts)
                rows = await conn.fetch(q.SELECT_LOST_CRON_FIRES, lost_before)
                if rows:
                    await conn.execute(q.COUNT_FIRE_ATTEMPTS, now, [r[0] for r in rows])
        return [
            (ScheduleExecutionRecord(*tuple(r)[:width]), CronScheduleRecord(*tuple(r)[width:]))
            for r in rows
        ]

    # reactors -----------------------------------------------------------------------
    async def upsert_subscription(
        self, new_id: str, reactor_name: str, workflow_name: str, tenant_id: str,
        predicate: Optional[str], now: float,
    ) -> str:
        return await self._require_pool().fetchval(  # type: ignore[no-any-return]
            q.UPSERT_SUBSCRIPTION, new_id, reactor_name, workflow_name, tenant_id, predicate, now
        )

    async def delete_subscription(self, reactor_name: str, workflow_name: str, tenant_id: str) -> bool:
        status = await self._require_pool().execute(
            q.DELETE_SUBSCRIPTION, reactor_name, workflow_name, tenant_id
        )
        return status != "DELETE 0"

    async def list_subscriptions(self, tenant_id: Optional[str]) -> list[SubscriptionRecord]:
        rows = await self._require_pool().fetch(q.LIST_SUBSCRIPTIONS, tenant_id)
        return [SubscriptionRecord(*r) for r in rows]

    async def claim_subscriptions(self, owner: str, now: float, lease_until: float) -> list[SubscriptionRecord]:
        rows = await self._require_pool().fetch(q.CLAIM_SUBSCRIPTIONS, owner, lease_until, now)
        return sorted((SubscriptionRecord(*r) for r in rows), key=lambda r: (r.created_at, r.id))

    async def release_subscriptions(self, owner: str) -> None:
        await self._require_pool().execute(q.RELEASE_SUBSCRIPTIONS, owner)

    async def save_subscription_progress(self, r: SubscriptionRecord) -> None:
        await self._require_pool().execute(
            q.SAVE_SUBSCRIPTION_PROGRESS, r.last_seen_fired_at, r.last_seen_firing_id,
            r.predicate_degraded, r.predicate_error_count, r.last_predicate_error,
            r.last_predicate_error_at, r.predicate_error_firing_id, r.updated_at, r.id,
        )

    async def insert_firing(self, f: FiringRecord) -> None:
        await self._require_pool().execute(
            q.INSERT_FIRING, f.id, f.tenant_id, f.reactor_name, f.payload, f.fired_at
        )

    async def firings_after(
        self, tenant_id: str, reactor_name: str, after: Optional[tuple[float, str]], limit: int
    ) -> list[FiringRecord]:
        at, firing_id = after if after is not None else (None, None)
        rows = await self._require_pool().fetch(
            q.FIRINGS_AFTER, tenant_id, reactor_name, at, firing_id, limit
        )
        return [FiringRecord(*r) for r in rows]

    async def prune_firings(self, before: float) -> int:
        status = await self._require_pool().execute(q.PRUNE_FIRINGS, before)
        return int(status.split()[-1])

    async def save_reactor_state(self, tenant_id: str, reactor_name: str, state: str, now: float) -> None:
        await self._require_pool().execute(q.SAVE_REACTOR_STATE, tenant_id, reactor_name, state, now)

    async def load_reactor_state(self, tenant_id: str, reactor_name: str) -> Optional[str]:
        return await self._require_pool().fetchval(  # type: ignore[no-any-return]
            q.LOAD_REACTOR_STATE, tenant_id, reactor_name
        )

    async def save_accumulator_state(
        self, tenant_id: str, accumulator_name: str, kind: str, data: str, now: float
    ) -> None:
        sql = q.SAVE_ACCUMULATOR_STATE.format(table=q.ACCUMULATOR_TABLES[kind])
        await self._require_pool().execute(sql, tenant_id, accumulator_name, data, now)

    async def load_accumulator_state(self, tenant_id: str, accumulator_name: str, kind: str) -> Optional[str]:
        sql = q.LOAD_ACCUMULATOR_STATE.format(table=q.ACCUMULATOR_TABLES[kind])
        return await self._require_pool().fetchval(sql, tenant_id, accumulator_name)  # type: ignore[no-any-return]

    async def reactor_tenants(self) -> list[str]:
        return [r[0] for r in await self._require_pool().fetch(q.REACTOR_TENANTS)]


# --------------------------------------------------------------------------------------
# Migrations (shared with postgres_tenants, which runs them for a new tenant)


async def apply_migrations(conn: asyncpg.Connection, schema: Optional[str]) -> None:
    """Bring `schema` (or the connection's current schema) up to date; call inside a transaction.

    With `schema`, the schema is created if missing and becomes the transaction's
    search_path. Set-up of one schema is serialised by an advisory lock, so runners that
    start together on a new database do not race to create the same tables. Raises
    SchemaTooNew if a newer cloaca migrated the schema.
    """
    if schema is not None:
        check_identifier("schema", schema, RESERVED_SCHEMAS)
        quoted = q.quote_ident(schema)
        await conn.execute(q.ADVISORY_XACT_LOCK, q.MIGRATION_LOCK_KEY + schema)
        # Checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the
        # database even when the schema exists, and a tenant's role does not have it.
        if not await conn.fetchval(q.SCHEMA_EXISTS, schema):
            await conn.execute(q.CREATE_SCHEMA.format(schema=quoted))
        await conn.execute(q.SET_LOCAL_SEARCH_PATH.format(schema=quoted))
    else:
        current = await conn.fetchval(q.CURRENT_SCHEMA)
        await conn.execute(q.ADVISORY_XACT_LOCK, q.MIGRATION_LOCK_KEY + (current or ""))
    await conn.execute(q.CREATE_VERSION_TABLE)
    current_version = await conn.fetchval(q.GET_VERSION) or 0
    if current_version > q.LATEST_VERSION:
        raise SchemaTooNew(
            f"schema version {current_version} is newer than this cloaca understands "
            f"({q.LATEST_VERSION})"
        )
    for version, script in q.MIGRATIONS:
        if version > current_version:
            await conn.execute(script)  # no parameters: the simple protocol runs the whole script
            await conn.execute(q.SET_VERSION, version)


# --------------------------------------------------------------------------------------
# URLs and messages


def describe_url(url: str) -> str:
    """"'database' on host:port" for a postgres URL, without user or password."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    hostspec = parts.netloc.rpartition("@")[2]
    if not hostspec and "host" in query:
        hostspec = query["host"][0]
        if "port" in query:
            hostspec += f":{query['port'][0]}"
    host, port = hostspec, ""
    if hostspec.startswith("["):  # [IPv6]:port
        host, _, rest = hostspec.partition("]")
        host += "]"
        port = rest[1:] if rest.startswith(":") else ""
    elif hostspec.count(":") == 1:
        host, _, port = hostspec.partition(":")
    host = urllib.parse.unquote(host) or "localhost"
    database = urllib.parse.unquote(parts.path.lstrip("/"))
    if not database:
        database = query.get("dbname", [""])[0] or urllib.parse.unquote(
            parts.netloc.rpartition("@")[0].partition(":")[0]
        )
    return f"'{database}' on {host}:{port or 5432}"


def url_secrets(url: str) -> list[str]:
    """The password of `url` in every spelling an error message might echo, longest first."""
    parts = urllib.parse.urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    secrets = []
    if ":" in userinfo:
        raw = userinfo.partition(":")[2]
        secrets += [raw, urllib.parse.unquote(raw)]
    for value in urllib.parse.parse_qs(parts.query).get("password", []):
        secrets += [value, urllib.parse.quote(value, safe="")]
    secrets = [s for s in secrets if s]
    if secrets:
        secrets.append(url)  # the whole URL, in case it is echoed verbatim
    return sorted(set(secrets), key=len, reverse=True)


def scrub(message: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        message = message.replace(secret, "***")
    return message


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return f"connection timed out after {CONNECT_TIMEOUT_SECONDS:g}s"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def reset_released(conn: asyncpg.Connection) -> None:
    """What a connection going back to the pool needs. The store keeps no session state on
    pooled connections (no SET but SET LOCAL, no LISTEN — that has a connection of its own —,
    no session-level advisory lock, no cursor), so asyncpg's default reset (four statements,
    one round trip on every release: half of a one-task run's round trips) is replaced by
    undoing a transaction left open, if any."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def _task_arrays(tasks: Sequence[TaskRecord]) -> tuple[list[Any], ...]:
    """The task rows as twelve parallel arrays (the unnest() parameters $1..$12)."""
    return (
        [t.execution_id for t in tasks], [t.task_name for t in tasks], [t.status for t in tasks],
        [t.attempt for t in tasks], [t.not_before for t in tasks], [t.started_at for t in tasks],
        [t.completed_at for t in tasks], [t.output_context for t in tasks],
        [t.error_message for t in tasks], [t.finish_seq for t in tasks],
        [t.attempt_base for t in tasks], [t.traceback for t in tasks],
    )


def _cron_row(r: CronScheduleRecord) -> tuple[Any, ...]:
    return (r.id, r.workflow_name, r.instance_name, r.cron_expression, r.timezone, bool(r.enabled),
            r.catchup_policy, r.params, r.next_run_at, r.last_run_at, r.created_at, r.updated_at)
