"""The store side of work shared by task (`WorkSharing.BY_TASK`), on SQLite and PostgreSQL.

The contract is the one of cloaca/_store/base.py: `claim_tasks`, `commit_step` (compare-and-set
on the run's `version`), `commit_step_locked`, `renew_task_leases`, `release_leases`,
`ended_runs` and, on PostgreSQL, `listen`. Each test runs on a SQLite file made with
`work_sharing=BY_TASK` and on a fresh PostgreSQL schema, dropped afterwards (skipped when
CLOACA_TEST_POSTGRES_URL is not set); what only one backend has (LISTEN/NOTIFY and row locks
on PostgreSQL; SQLite's migration, URL and processes sharing one file) is tested on that one.
Runners are played by store instances (several on the same database where two runners
matter) and by owner names. Who holds a task (owner, lease) is not part of the records the
Store API returns, so it is read with plain SQL on the tables, whose names both share.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from typing import Any, Callable, Optional, Sequence

import asyncpg
import pytest
import pytest_asyncio
from test_store_contract import (
    POSTGRES_URL,
    T0,
    Backend,
    PostgresBackend,
    SQLiteBackend,
    cron_record,
    execution,
    finished,
)

from cloaca._store import sqlite_queries, store_for_url
from cloaca._store.base import (
    ClaimedWork,
    ClaimStore,
    CronSlotClaim,
    FireRequest,
    Notice,
    RunLost,
    Store,
    StoredRun,
    TaskRecord,
    WorkSharing,
)
from cloaca._store.sqlite import SQLiteStore

pytestmark = pytest.mark.asyncio

WF = "wf"
NOTICE_WAIT_SECONDS = 10.0


# ====================================================================== fixtures
@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def backend(request, tmp_path):
    if request.param == "sqlite":
        b: Backend = SQLiteBackend(str(tmp_path / "claims.db"), WorkSharing.BY_TASK)
    else:
        if not POSTGRES_URL:
            pytest.skip("CLOACA_TEST_POSTGRES_URL is not set")
        b = PostgresBackend(POSTGRES_URL)
        b.schema = f"cloaca_claims_{uuid.uuid4().hex[:12]}"
    try:
        yield b
    finally:
        await b.cleanup()


def only_on(backend: Backend, name: str, why: str) -> None:
    """Skip the test on the other backend, saying why it does not apply there."""
    if backend.name != name:
        pytest.skip(f"{name} only: {why}")


@pytest_asyncio.fixture
async def store(opened) -> Store:
    s = await opened()
    assert s.work_sharing is WorkSharing.BY_TASK
    return s


# ====================================================================== helpers
def task(run_id: str, name: str, status: str = "Ready", **kw: Any) -> TaskRecord:
    return TaskRecord(run_id, name, status, **kw)


async def add_run(
    store: Store, run_id: str, tasks: Sequence[TaskRecord], workflow: str = WF,
    started_at: float = T0, owner: str = "creator", lease_until: float = T0 + 5,
    fire: Optional[FireRequest] = None, link_fire_id: Optional[str] = None,
    status: str = "Running",
) -> None:
    assert await store.create_execution(
        execution(run_id, workflow, started_at, status=status), list(tasks), owner, lease_until,
        fire, link_fire_id,
    )


def claimed_keys(claims: Sequence[ClaimedWork]) -> set[tuple[str, str]]:
    return {(c.execution_id, t.task_name) for c in claims for t in c.tasks}


def claimed_tasks(claims: Sequence[ClaimedWork]) -> dict[tuple[str, str], TaskRecord]:
    out = {}
    for c in claims:
        for t in c.tasks:
            assert t.execution_id == c.execution_id
            assert (c.execution_id, t.task_name) not in out, "a task claimed twice in one call"
            out[(c.execution_id, t.task_name)] = t
    return out


async def tasks_of(store: Store, run_id: str) -> dict[str, TaskRecord]:
    run = await store.get_run(run_id)
    assert run is not None
    return {t.task_name: t for t in run.tasks}


async def version_of(store: Store, run_id: str) -> int:
    run = await store.get_run(run_id)
    assert run is not None
    return run.version


async def holders(backend: Backend, run_id: str) -> dict[str, tuple[str, Optional[str], Optional[float]]]:
    """task name -> (status, owner, lease_until), read with plain SQL."""
    rows = await backend.raw(
        "SELECT task_name, status, owner, lease_until FROM task_executions "
        f"WHERE execution_id = '{run_id}'"
    )
    return {name: (status, owner, lease) for name, status, owner, lease in rows}


class Notices:
    """An `on_notice` callback that records notices and lets a test await one."""

    def __init__(self) -> None:
        self.got: list[Notice] = []
        self._changed = asyncio.Event()

    def __call__(self, notice: Notice) -> None:
        assert isinstance(notice, Notice)
        self.got.append(notice)
        self._changed.set()

    async def wait_for(self, wanted: Callable[[Notice], bool], since: int) -> None:
        """Until a notice received at index `since` or later is `wanted` (bounded wait)."""

        async def until() -> None:
            while not any(wanted(n) for n in self.got[since:]):
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(until(), NOTICE_WAIT_SECONDS)
        except asyncio.TimeoutError:
            pytest.fail(f"no such notice within {NOTICE_WAIT_SECONDS}s; got {self.got[since:]}")


NOTIFY_ONLY = "LISTEN/NOTIFY (SQLite pushes no notices: runners poll)"
ROW_LOCKS_ONLY = "row locks held by a third session (SQLite's writers hold one lock in turn)"


async def listening_sessions(backend: PostgresBackend, store: Any) -> int:
    rows = await backend.raw(
        f"SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN \"{store.channel}\"'"
    )
    return rows[0][0]


async def wait_until_sessions(backend: PostgresBackend, store: Any, count: int) -> None:
    async def until() -> None:
        while await listening_sessions(backend, store) != count:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(until(), NOTICE_WAIT_SECONDS)


# ====================================================================== claim_tasks
async def test_claim_tasks_claims_due_ready_tasks_of_running_runs_of_listed_workflows_only(store, backend):
    await add_run(store, "r1", [
        task("r1", "ready", attempt=0),
        task("r1", "not-started", "NotStarted"),
        task("r1", "done", "Completed", attempt=1, started_at=T0, completed_at=T0 + 1,
             output_context='{"d": 1}', finish_seq=1),
        task("r1", "later", attempt=2, not_before=T0 + 100, started_at=T0 - 5),
    ])
    await add_run(store, "r2", [task("r2", "retry", attempt=1, started_at=T0 - 1)], started_at=T0 + 1)
    await add_run(store, "foreign", [task("foreign", "x")], workflow="other_wf")
    await add_run(store, "ended", [task("ended", "x")])
    await store.save_progress([], finished("ended", T0 + 2))
    before_r1 = await tasks_of(store, "r1")

    claims = await store.claim_tasks("me", T0 + 10, T0 + 20, [WF, "also_wf"], 10, False, {})
    got = claimed_tasks(claims)
    assert set(got) == {("r1", "ready"), ("r2", "retry")}
    assert got["r1", "ready"] == task("r1", "ready", "Running", attempt=1, started_at=T0 + 10)
    assert got["r2", "retry"] == task("r2", "retry", "Running", attempt=2, started_at=T0 + 10)
    assert sorted(c.execution_id for c in claims) == ["r1", "r2"]  # one ClaimedWork per run

    # The store shows the claims; the rows that were not claimable are untouched.
    after_r1 = await tasks_of(store, "r1")
    assert after_r1["ready"] == got["r1", "ready"]
    assert {n: after_r1[n] for n in ("not-started", "done", "later")} == {
        n: before_r1[n] for n in ("not-started", "done", "later")}
    assert (await tasks_of(store, "r2"))["retry"] == got["r2", "retry"]
    assert (await holders(backend, "r1"))["ready"] == ("Running", "me", T0 + 20)
    assert (await tasks_of(store, "foreign"))["x"].status == "Ready"
    assert (await tasks_of(store, "ended"))["x"].status == "Ready"

    # Nothing else is claimable before `later` is due; then `later` is.
    assert await store.claim_tasks("me", T0 + 99, T0 + 200, [WF], 10, False, {}) == []
    [later] = await store.claim_tasks("me", T0 + 101, T0 + 200, [WF], 10, False, {})
    assert later.execution_id == "r1"
    assert later.tasks == [task("r1", "later", "Running", attempt=3, started_at=T0 + 101)]
    assert (await tasks_of(store, "r1"))["later"] == later.tasks[0]

    # The task of the finished run is never claimed; the other workflow's only when listed.
    assert await store.claim_tasks("me", T0 + 1000, T0 + 2000, [WF], 10, False, {}) == []
    assert claimed_keys(await store.claim_tasks("me", T0 + 1000, T0 + 2000, ["other_wf"], 10, False, {})) == {
        ("foreign", "x")}
    assert (await tasks_of(store, "ended"))["x"].status == "Ready"


async def test_claim_tasks_with_no_workflow_or_no_room_claims_nothing(store):
    await add_run(store, "r", [task("r", "a")])
    assert await store.claim_tasks("me", T0 + 10, T0 + 20, [], 10, True, {}) == []
    assert await store.claim_tasks("me", T0 + 10, T0 + 20, [WF], 0, True, {}) == []
    assert (await tasks_of(store, "r"))["a"].status == "Ready"


async def test_claim_tasks_respects_the_limit(store):
    names = [f"t{i}" for i in range(5)]
    await add_run(store, "r", [task("r", n) for n in names])
    seen: set[tuple[str, str]] = set()
    for expected in (2, 2, 1, 0):
        got = claimed_keys(await store.claim_tasks("me", T0 + 10, T0 + 20, [WF], 2, False, {}))
        assert len(got) == expected
        assert not got & seen
        seen |= got
    assert seen == {("r", n) for n in names}
    assert {t.status for t in (await tasks_of(store, "r")).values()} == {"Running"}


async def test_running_tasks_are_taken_over_only_with_take_over_once_their_lease_expired(store, backend):
    await add_run(store, "expired", [task("expired", "t", "Running", attempt=1, started_at=T0)],
                  owner="old", lease_until=T0 + 5)
    await add_run(store, "live", [task("live", "t", "Running", attempt=1, started_at=T0)],
                  owner="old", lease_until=T0 + 100)
    await add_run(store, "ready", [task("ready", "t")])
    versions = {r: await version_of(store, r) for r in ("expired", "live", "ready")}

    # Without take_over only the Ready task; claiming it does not move its run's version.
    assert claimed_keys(await store.claim_tasks("new", T0 + 10, T0 + 60, [WF], 10, False, {})) == {
        ("ready", "t")}
    assert {r: await version_of(store, r) for r in versions} == versions

    claims = await store.claim_tasks("new", T0 + 10, T0 + 60, [WF], 10, True, {})
    got = claimed_tasks(claims)
    assert set(got) == {("expired", "t")}
    assert got["expired", "t"] == task("expired", "t", "Running", attempt=2, started_at=T0 + 10)
    assert (await holders(backend, "expired"))["t"] == ("Running", "new", T0 + 60)
    assert await version_of(store, "expired") == versions["expired"] + 1
    assert await version_of(store, "live") == versions["live"]
    assert await version_of(store, "ready") == versions["ready"]
    assert (await holders(backend, "live"))["t"] == ("Running", "old", T0 + 100)

    # Now everything is held under a live lease: nobody gets anything until a lease ends.
    assert await store.claim_tasks("third", T0 + 50, T0 + 500, [WF], 10, True, {}) == []
    assert claimed_keys(await store.claim_tasks("third", T0 + 70, T0 + 500, [WF], 10, True, {})) == {
        ("expired", "t"), ("ready", "t")}
    assert await version_of(store, "expired") == versions["expired"] + 2
    assert await version_of(store, "ready") == versions["ready"] + 1


async def test_a_claim_taken_over_after_its_lease_expired_refuses_the_old_claimers_step(opened):
    first, second = await opened(), await opened()
    await add_run(first, "r", [task("r", "a")])
    [claim] = await first.claim_tasks("A", T0 + 1, T0 + 5, [WF], 10, False, {})
    version = claim.run.version

    [taken] = await second.claim_tasks("B", T0 + 10, T0 + 60, [WF], 10, True, {})
    assert taken.tasks == [task("r", "a", "Running", attempt=2, started_at=T0 + 10)]
    assert taken.run is not None and taken.run.version == version + 1

    late = task("r", "a", "Completed", attempt=1, started_at=T0 + 1, completed_at=T0 + 11,
                output_context="{}", finish_seq=1)
    assert await first.commit_step("r", version, "A", T0 + 20, [late]) is False
    assert (await tasks_of(first, "r"))["a"] == taken.tasks[0]


async def test_concurrent_claims_from_two_stores_are_disjoint(opened):
    first, second = await opened(), await opened()
    for round_ in range(3):
        run_ids = [f"r{round_}-{i}" for i in range(10)]
        everything = {(r, f"t{j}") for r in run_ids for j in range(5)}
        for i, run_id in enumerate(run_ids):
            await add_run(first, run_id, [task(run_id, f"t{j}") for j in range(5)], started_at=T0 + i)
        a, b = await asyncio.gather(
            first.claim_tasks("A", T0 + 1, T0 + 10_000, [WF], 50, False, {}),
            second.claim_tasks("B", T0 + 1, T0 + 10_000, [WF], 50, False, {}),
        )
        got_a, got_b = claimed_keys(a), claimed_keys(b)
        assert not got_a & got_b
        assert got_a | got_b == everything
        assert len(got_a) + len(got_b) == sum(len(c.tasks) for c in a + b)
        assert {t.status for t in claimed_tasks(a + b).values()} == {"Running"}
        for run_id in run_ids:
            assert await version_of(first, run_id) == 0  # claims of Ready tasks


async def test_concurrent_take_overs_from_two_stores_are_disjoint(opened):
    first, second = await opened(), await opened()
    for round_ in range(3):
        run_ids = [f"r{round_}-{i}" for i in range(10)]
        everything = {(r, f"t{j}") for r in run_ids for j in range(5)}
        for i, run_id in enumerate(run_ids):
            await add_run(first, run_id, [task(run_id, f"t{j}", "Running", attempt=1, started_at=T0)
                                          for j in range(5)], started_at=T0 + i, owner="dead",
                          lease_until=T0 + 5)
        a, b = await asyncio.gather(
            first.claim_tasks("A", T0 + 10, T0 + 10_000, [WF], 50, True, {}),
            second.claim_tasks("B", T0 + 10, T0 + 10_000, [WF], 50, True, {}),
        )
        got_a, got_b = claimed_keys(a), claimed_keys(b)
        assert not got_a & got_b
        # A take-over passes over runs the other claimer has locked: what is left is taken
        # by the next claim, never twice.
        rest = await first.claim_tasks("C", T0 + 10, T0 + 10_000, [WF], 50, True, {})
        got_rest = claimed_keys(rest)
        assert not (got_a | got_b) & got_rest
        assert got_a | got_b | got_rest == everything
        assert {t.attempt for t in claimed_tasks(a + b + rest).values()} == {2}
        # Each claimer's take-over bumps the version of each run it took tasks of, once.
        for run_id in run_ids:
            takers = sum(run_id in {c.execution_id for c in claims} for claims in (a, b, rest))
            assert await version_of(first, run_id) == takers


async def blocked_by(monitor: Any, pids: set[int], count: int) -> list[int]:
    """The sessions waiting for a lock that one of `pids` holds (or waits for ahead of them),
    once there are `count` of them (a bounded wait)."""
    async def until() -> list[int]:
        while True:
            rows = await monitor.fetch(
                "SELECT pid FROM pg_stat_activity WHERE pg_blocking_pids(pid) && $1::int[]",
                list(pids),
            )
            if len(rows) >= count:
                return [r[0] for r in rows]
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(until(), NOTICE_WAIT_SECONDS)


async def test_a_take_over_passes_over_a_run_whose_step_is_in_flight(opened, backend):
    """A take-over racing the old claimer's step never waits for it (nor deadlocks with it).

    A third session holds the run row locked, as a step in flight does, while the old
    claimer's step waits behind it: the take-over returns at once without the task. Once the
    run row is free, the step commits and there is nothing left to take over.
    """
    only_on(backend, "postgres", ROW_LOCKS_ONLY)
    first, second = await opened(), await opened()
    await add_run(first, "r", [task("r", "a")])
    [claim] = await first.claim_tasks("A", T0 + 1, T0 + 5, [WF], 10, False, {})
    version = claim.run.version
    done = task("r", "a", "Completed", attempt=1, started_at=T0 + 1, completed_at=T0 + 6,
                output_context="{}", finish_seq=1)

    gate = await asyncpg.connect(backend.url, server_settings={"search_path": backend.schema})
    monitor = await asyncpg.connect(backend.url)
    step: Optional[asyncio.Future[Any]] = None
    try:
        async with gate.transaction():
            await gate.execute("SELECT 1 FROM workflow_executions WHERE id = 'r' FOR UPDATE")
            step = asyncio.ensure_future(first.commit_step("r", version, "A", T0 + 50, [done]))
            await blocked_by(monitor, {gate.get_server_pid()}, 1)
            taken = await asyncio.wait_for(
                second.claim_tasks("B", T0 + 10, T0 + 60, [WF], 10, True, {}), 10)
            assert taken == []
    finally:
        committed = await step if step is not None else None
        await gate.close()
        await monitor.close()
    assert committed is True
    assert (await tasks_of(first, "r"))["a"] == done
    assert await version_of(first, "r") == version + 1
    assert await second.claim_tasks("B", T0 + 20, T0 + 60, [WF], 10, True, {}) == []


def index_scans(plan: dict[str, Any], index: str) -> list[dict[str, Any]]:
    """The nodes of an EXPLAIN (FORMAT JSON) plan that scan `index`."""
    found = [plan] if plan.get("Index Name") == index else []
    for child in plan.get("Plans", []):
        found += index_scans(child, index)
    return found


async def test_a_take_over_looks_up_its_rows_once_however_many_runs_are_in_flight(opened, backend):
    """A take-over scans the claimable rows' index once, not once per unfinished run: that
    index keeps an entry for every version of a row that was ever Running until the table is
    vacuumed (each task goes Running), so a scan of it per run cost runs in flight x versions
    written, and took a runner's take-over, once a second, to 425 ms of server time with 128
    runs in flight (bench_postgres, 4 processes). (A claim of Ready tasks keeps the join from
    the runs: see CLAIM_READY_TASKS.)"""
    only_on(backend, "postgres", "the plan of PostgreSQL's claim statements")
    from cloaca._store import postgres_queries as q

    store = await opened()
    for n in range(60):  # runs in flight, one task Running each under a live lease
        await add_run(store, f"r{n:02}", [task(f"r{n:02}", "a", "Running", attempt=1, started_at=T0)],
                      started_at=T0 + n, owner="A", lease_until=T0 + 100)
    conn = await asyncpg.connect(backend.url, server_settings={"search_path": backend.schema})
    try:
        for sql in (q.TAKE_OVER_TASKS,):
            claim = conn.transaction()  # EXPLAIN ANALYZE makes the claim: rolled back
            await claim.start()
            try:
                explained = await conn.fetchval(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + sql, T0 + 10, "B", [WF], 10, T0 + 60, None)
            finally:
                await claim.rollback()
            scans = index_scans(json.loads(explained)[0]["Plan"], "ix_tasks_claimable")
            assert scans, "the claimable rows are looked up in their index"
            assert max(scan["Actual Loops"] for scan in scans) == 1
    finally:
        await conn.close()


async def test_release_leases_racing_a_step_of_the_same_runner_never_deadlocks(opened, backend):
    """Both lock the run's row before its task rows: the one queued first wins, no deadlock.

    A third session holds the run row while the step queues behind it, then the release.
    """
    only_on(backend, "postgres", ROW_LOCKS_ONLY)
    store = await opened()
    await add_run(store, "r", [task("r", "a")])
    [claim] = await store.claim_tasks("A", T0 + 1, T0 + 50, [WF], 10, False, {})
    done = task("r", "a", "Completed", attempt=1, started_at=T0 + 1, completed_at=T0 + 6,
                output_context="{}", finish_seq=1)

    gate = await asyncpg.connect(backend.url, server_settings={"search_path": backend.schema})
    monitor = await asyncpg.connect(backend.url)
    calls: list[asyncio.Future[Any]] = []
    try:
        async with gate.transaction():
            await gate.execute("SELECT 1 FROM workflow_executions WHERE id = 'r' FOR UPDATE")
            calls.append(asyncio.ensure_future(store.commit_step("r", claim.run.version, "A", T0 + 50, [done])))
            [stepper] = await blocked_by(monitor, {gate.get_server_pid()}, 1)
            calls.append(asyncio.ensure_future(store.release_leases("A")))
            await blocked_by(monitor, {gate.get_server_pid(), stepper}, 2)
    finally:
        results = await asyncio.gather(*calls, return_exceptions=True)
        await gate.close()
        await monitor.close()
    assert results == [True, None]
    assert (await tasks_of(store, "r"))["a"] == done


async def test_known_versions_spare_reading_back_runs_the_claimer_holds(store):
    await add_run(store, "r", [task("r", "a"), task("r", "b"), task("r", "c"),
                               task("r", "d", "NotStarted")])
    await add_run(store, "s", [task("s", "x"), task("s", "y")], workflow="wfS")
    await add_run(store, "old", [task("old", "t", "Running", attempt=1, started_at=T0)],
                  workflow="wf2", lease_until=T0 + 5)

    # The current version: not read back.
    [one] = await store.claim_tasks("me", T0 + 1, T0 + 50, [WF], 1, False, {"r": 0})
    assert one.execution_id == "r" and one.run is None and [t.task_name for t in one.tasks] == ["a"]

    # A step moves r on (version 1, rows a and d): a claimer that knew version 0 gets those
    # rows back; a run it did not know comes back whole.
    a_done = task("r", "a", "Completed", attempt=1, started_at=T0 + 1, completed_at=T0 + 2,
                  output_context="{}", finish_seq=1)
    d_ready = task("r", "d", "Ready")
    assert await store.commit_step("r", 0, "me", T0 + 50, [a_done, d_ready]) is True
    claims = await store.claim_tasks("me", T0 + 3, T0 + 50, [WF, "wfS"], 10, False, {"r": 0})
    by_run = {c.execution_id: c for c in claims}
    assert {k: sorted(t.task_name for t in c.tasks) for k, c in by_run.items()} == {
        "r": ["b", "c", "d"], "s": ["x", "y"]}
    changed = by_run["r"].run
    assert isinstance(changed, StoredRun)
    assert changed.execution == execution("r") and changed.version == 1
    # Read after the claim: d as this claim left it (the step had made it Ready).
    assert changed.tasks == [a_done, {t.task_name: t for t in by_run["r"].tasks}["d"]]
    whole = by_run["s"].run
    assert whole is not None and whole.version == 0
    assert {t.task_name: t for t in whole.tasks} == await tasks_of(store, "s")
    assert {t.status for t in whole.tasks} == {"Running"}  # read after the claim

    # A take-over moves the version on and marks the rows it took as changed.
    [taken] = await store.claim_tasks("me", T0 + 10, T0 + 50, ["wf2"], 10, True, {"old": 0})
    assert taken.run is not None
    assert taken.run.version == 1
    assert taken.run.tasks == [task("old", "t", "Running", attempt=2, started_at=T0 + 10)]


# ====================================================================== commit_step
async def test_commit_step_locked_computes_from_what_changed_and_cannot_lose(opened):
    mine, theirs = await opened(), await opened()
    await add_run(mine, "r", [task("r", "a"), task("r", "b"), task("r", "c"),
                              task("r", "d", "NotStarted")])
    [claim] = await mine.claim_tasks("me", T0 + 1, T0 + 50, [WF], 1, False, {})
    [other] = await theirs.claim_tasks("them", T0 + 1, T0 + 50, [WF], 1, False, {})
    assert (claim.tasks[0].task_name, other.tasks[0].task_name) == ("a", "b")
    b_done = task("r", "b", "Completed", attempt=1, started_at=T0 + 1, completed_at=T0 + 2,
                  output_context="{}", finish_seq=1)
    assert await theirs.commit_step("r", 0, "them", T0 + 50, [b_done]) is True
    a_done = task("r", "a", "Completed", attempt=1, started_at=T0 + 1, completed_at=T0 + 3,
                  output_context="{}", finish_seq=2)
    assert await mine.commit_step("r", 0, "me", T0 + 50, [a_done]) is False  # stale

    seen: list[StoredRun] = []

    def compute(stored: StoredRun):
        seen.append(stored)
        return [a_done], None

    assert await mine.commit_step_locked("r", 0, ["a"], "me", T0 + 50, compute) is True
    [stored] = seen
    assert stored.version == 1 and stored.execution.status == "Running"
    # b changed after version 0; a was asked for by name (as stored: still Running, claimed).
    assert [t.task_name for t in stored.tasks] == ["a", "b"]
    assert stored.tasks[1] == b_done and stored.tasks[0].status == "Running"
    assert await version_of(mine, "r") == 2
    assert (await tasks_of(mine, "r"))["a"] == a_done

    # compute may decline: nothing is written. An unknown run: compute is not called.
    assert await mine.commit_step_locked("r", 2, [], "me", T0 + 50, lambda stored: None) is False
    assert await version_of(mine, "r") == 2
    assert await mine.commit_step_locked("nope", 0, [], "me", T0 + 50, compute) is False
    assert len(seen) == 1

    # Concurrent locked steps on one run are serialised: both win, the one written last
    # computed from the other's (compute may be called more than once: the last call's
    # step is the one written).
    c_ready, d_ready = task("r", "c", "Ready", not_before=T0 + 99), task("r", "d", "Ready")
    versions: dict[str, list[int]] = {"c": [], "d": []}

    def writes(row: TaskRecord):
        def compute_one(stored: StoredRun):
            versions[row.task_name].append(stored.version)
            return [row], None
        return compute_one

    results = await asyncio.gather(
        mine.commit_step_locked("r", 2, [], "me", T0 + 50, writes(c_ready)),
        theirs.commit_step_locked("r", 2, [], "them", T0 + 50, writes(d_ready)),
    )
    assert results == [True, True]
    assert sorted([versions["c"][-1], versions["d"][-1]]) == [2, 3]
    assert await version_of(mine, "r") == 4
    rows = await tasks_of(mine, "r")
    assert (rows["c"], rows["d"]) == (c_ready, d_ready)


async def test_commit_step_is_compare_and_set_on_the_run_version(store, backend):
    await add_run(store, "r", [task("r", "a"), task("r", "b"), task("r", "c", "NotStarted")])
    claims = await store.claim_tasks("A", T0 + 1, T0 + 20, [WF], 10, False, {})
    assert claimed_keys(claims) == {("r", "a"), ("r", "b")}
    v0 = await version_of(store, "r")

    step = [
        task("r", "a", "Completed", attempt=1, started_at=T0 + 1, completed_at=T0 + 2,
             output_context='{"a": 1}', finish_seq=1),
        task("r", "b", "Running", attempt=1, started_at=T0 + 1),
        task("r", "c", "Ready", not_before=T0 + 30, error_message="later"),
    ]
    assert await store.commit_step("r", v0, "A", T0 + 40, step) is True
    run = await store.get_run("r")
    assert run.version == v0 + 1
    assert {t.task_name: t for t in run.tasks} == {t.task_name: t for t in step}
    assert run.execution == execution("r")  # still running
    assert await holders(backend, "r") == {
        "a": ("Completed", None, None),
        "b": ("Running", "A", T0 + 40),
        "c": ("Ready", None, None),
    }

    # A step computed from the old version (or a future one) is refused and writes nothing.
    stale = [task("r", "a", "Failed", attempt=1, error_message="stale"),
             task("r", "b", "Completed", attempt=1, completed_at=T0 + 3, finish_seq=2),
             task("r", "c", "Running", attempt=1, started_at=T0 + 3)]
    before, held = await store.get_run("r"), await holders(backend, "r")
    assert await store.commit_step("r", v0, "B", T0 + 99, stale) is False
    assert await store.commit_step("r", v0 + 2, "B", T0 + 99, stale) is False
    assert await store.commit_step("r", v0, "B", T0 + 99, stale, finished("r", T0 + 3, "Failed")) is False
    assert await store.commit_step("no-such-run", 0, "B", T0 + 99, []) is False
    assert await store.get_run("r") == before
    assert await holders(backend, "r") == held
    assert await store.ended_runs(["r"]) == []

    # A Running row written by another committer becomes that committer's.
    assert await store.commit_step("r", v0 + 1, "B", T0 + 50, [
        task("r", "c", "Running", attempt=1, started_at=T0 + 31)]) is True
    assert await version_of(store, "r") == v0 + 2
    assert (await holders(backend, "r"))["c"] == ("Running", "B", T0 + 50)
    assert (await holders(backend, "r"))["b"] == ("Running", "A", T0 + 40)
    # Each Running row is held under its writer's lease: taken over only once that lease ends.
    assert await store.claim_tasks("C", T0 + 39, T0 + 100, [WF], 10, True, {}) == []
    assert claimed_keys(await store.claim_tasks("C", T0 + 45, T0 + 100, [WF], 10, True, {})) == {("r", "b")}


async def test_commit_step_finished_ends_the_run_and_closes_its_fires(store, backend):
    await store.upsert_trigger_schedule("trig", WF, 1000, False, T0)
    await add_run(store, "r", [task("r", "a"), task("r", "b", "NotStarted")],
                  fire=FireRequest("trig", "h1", True))
    await add_run(store, "other", [task("other", "a", "NotStarted")], fire=FireRequest("trig", "h2", True))
    await store.claim_tasks("A", T0 + 1, T0 + 20, [WF], 10, False, {})
    version = await version_of(store, "r")

    last = [task("r", "a", "Completed", attempt=1, started_at=T0 + 1, completed_at=T0 + 3,
                 output_context='{"a": 1}', finish_seq=1),
            task("r", "b", "Skipped", finish_seq=2)]
    end = finished("r", T0 + 3, status="Failed")
    assert await store.commit_step("r", version, "A", T0 + 20, last, end) is True

    run = await store.get_run("r")
    assert run.execution == end
    assert (run.execution.status, run.execution.final_context, run.execution.error_message,
            run.execution.completed_at) == ("Failed", '{"done": true}', "boom", T0 + 3)
    assert run.version == version + 1
    assert {t.task_name: t for t in run.tasks} == {t.task_name: t for t in last}
    assert await holders(backend, "r") == {"a": ("Completed", None, None), "b": ("Skipped", None, None)}
    history = {f.workflow_execution_id: f for f in await store.trigger_history("trig", 10, 0)}
    assert history["r"].completed_at == T0 + 3
    assert history["other"].completed_at is None
    assert [f.workflow_execution_id for f in await store.open_trigger_fires(T0 + 4)] == ["other"]
    assert await store.ended_runs(["r", "other"]) == ["r"]

    # An ended run takes no further step, even at its current version.
    before = await store.get_run("r")
    assert await store.commit_step("r", before.version, "A", T0 + 30, [
        task("r", "a", "Running", attempt=2, started_at=T0 + 4)]) is False
    assert await store.commit_step("r", before.version, "A", T0 + 30, [],
                                   finished("r", T0 + 5)) is False
    assert await store.get_run("r") == before


async def test_commit_step_finished_closes_a_linked_cron_fire(store):
    await store.create_cron_schedule(cron_record("s1", next_run_at=T0))
    [(fire_id, _)] = await store.claim_cron_slots(CronSlotClaim("s1", T0, T0 + 60, [T0], []), T0)
    await add_run(store, "r", [task("r", "a")], link_fire_id=fire_id, started_at=T0 + 1)
    [fire] = await store.cron_history("s1", 10, 0)
    assert fire.workflow_execution_id == "r" and fire.completed_at is None

    version = await version_of(store, "r")
    assert await store.commit_step("r", version, "A", T0 + 9, [
        task("r", "a", "Completed", attempt=1, completed_at=T0 + 2, finish_seq=1)],
        finished("r", T0 + 2)) is True
    [fire] = await store.cron_history("s1", 10, 0)
    assert fire.completed_at == T0 + 2 and fire.outcome is None


async def test_a_refused_step_writes_nothing_and_leaves_the_calls_written_with_it(store, backend):
    """Steps, refused and not, and a failing write, made together (on SQLite: one group
    transaction of the writer): each call's outcome is its own."""
    for run_id in ("r1", "r2", "r3", "r4"):
        await add_run(store, run_id, [task(run_id, "a"), task(run_id, "b", "NotStarted")])
    await store.claim_tasks("A", T0 + 1, T0 + 50, [WF], 10, False, {})
    before = {r: await store.get_run(r) for r in ("r2", "r3")}
    held = {r: await holders(backend, r) for r in ("r2", "r3")}

    def step(run_id: str, seq: int) -> list[TaskRecord]:
        return [task(run_id, "a", "Completed", attempt=1, started_at=T0 + 1, completed_at=T0 + 2,
                     output_context=f'{{"seq": {seq}}}', finish_seq=1),
                task(run_id, "b", "Running", attempt=1, started_at=T0 + 2)]

    outcomes = await asyncio.gather(
        store.commit_step("r1", 0, "A", T0 + 60, step("r1", 1)),
        store.commit_step("r2", 5, "A", T0 + 60, step("r2", 2)),  # a version it never had
        store.save_progress(step("r3", 3), None, owner="intruder"),  # r3 is not the intruder's
        store.commit_step("r4", 0, "A", T0 + 60, step("r4", 4)[:1] + [task("r4", "b", "Skipped")],
                          finished("r4", T0 + 2)),
        store.commit_step("r1", 0, "B", T0 + 60, step("r1", 5)),  # r1's version moved on just now
        return_exceptions=True,
    )
    assert outcomes[:2] == [True, False]
    assert isinstance(outcomes[2], RunLost)
    assert outcomes[3:] == [True, False]

    assert await tasks_of(store, "r1") == {t.task_name: t for t in step("r1", 1)}
    assert await version_of(store, "r1") == 1
    assert (await holders(backend, "r1"))["b"] == ("Running", "A", T0 + 60)
    assert (await store.get_run("r4")).execution == finished("r4", T0 + 2)
    for run_id in ("r2", "r3"):
        assert await store.get_run(run_id) == before[run_id]
        assert await holders(backend, run_id) == held[run_id]


# ====================================================================== runs reopened by nobody
async def failed_run(store: Store, run_id: str, workflow: str = WF, started_at: float = T0) -> None:
    """A Failed run: `a` Completed, `b` Failed."""
    await add_run(store, run_id, [
        task(run_id, "a", "Completed", attempt=1, started_at=started_at, completed_at=started_at + 1,
             output_context='{"a": 1}', finish_seq=1),
        task(run_id, "b", "Failed", attempt=1, started_at=started_at + 1, error_message="boom",
             finish_seq=2),
    ], workflow=workflow, started_at=started_at)
    await store.save_progress([], finished(run_id, started_at + 2, "Failed", workflow))


async def reopened_by_nobody(store: Store, run_id: str, workflow: str = WF, started_at: float = T0) -> None:
    """A Failed run (`a` Completed, `b` Failed) retried where its workflow is unknown."""
    await failed_run(store, run_id, workflow, started_at)
    assert (await store.reset_for_retry(run_id, None, started_at + 3, None)).execution.status == "Pending"


async def test_a_pending_run_is_claimed_by_one_runner_of_its_workflow_and_started_by_its_first_step(
    opened, backend,
):
    first, second = await opened(), await opened()
    await reopened_by_nobody(first, "r")
    await reopened_by_nobody(first, "other", workflow="other_wf", started_at=T0 + 1)
    assert await first.claim_tasks("X", T0 + 4, T0 + 10, [WF], 10, True, {}) == []  # no Ready task

    [got] = await first.claim_pending_runs("A", T0 + 4, T0 + 10, [WF], 10)
    assert (got.execution.id, got.execution.status) == ("r", "Pending")
    assert got.version == await version_of(first, "r")
    assert {t.task_name: t.status for t in got.tasks} == {"a": "Completed", "b": "NotStarted"}
    # Held by A until its lease ends: nobody else gets it meanwhile.
    assert [r.execution.id for r in await second.claim_pending_runs("B", T0 + 5, T0 + 20, [WF, "other_wf"], 10)] == [
        "other"]
    assert await second.claim_pending_runs("B", T0 + 9, T0 + 20, [WF], 10) == []
    assert await first.claim_pending_runs("B", T0 + 100, T0 + 200, [], 10) == []
    assert await first.claim_pending_runs("B", T0 + 100, T0 + 200, [WF], 0) == []
    # A never started it (it stopped): once the lease is over, another runner gets it.
    [again] = await second.claim_pending_runs("B", T0 + 11, T0 + 30, [WF], 10)
    assert again.execution.id == "r"
    assert (await first.get_run("r")).execution.status == "Pending"

    # The first step starts it (compare-and-set on the version, as any step).
    start = [task("r", "b", "Running", attempt=2, started_at=T0 + 12)]
    assert await first.commit_step("r", again.version - 1, "A", T0 + 40, start) is False
    assert await second.commit_step("r", again.version, "B", T0 + 40, start) is True
    run = await first.get_run("r")
    assert (run.execution.status, run.version) == ("Running", again.version + 1)
    assert (await holders(backend, "r"))["b"] == ("Running", "B", T0 + 40)
    assert await first.claim_pending_runs("C", T0 + 1000, T0 + 2000, [WF], 10) == []


async def test_a_run_reopened_by_a_runner_is_pending_under_its_lease_until_its_first_step(opened, backend):
    first, second = await opened(), await opened()
    for run_id in ("died", "went_on"):
        await failed_run(first, run_id)
        reopened = await first.reset_for_retry(run_id, "A", T0 + 6, T0 + 10)
        assert (reopened.execution.status, reopened.execution.completed_at) == ("Pending", None)
        assert {t.task_name: t.status for t in reopened.tasks} == {"a": "Completed", "b": "NotStarted"}
    assert await backend.raw("SELECT owner, lease_until FROM workflow_executions WHERE id = 'died'") == [
        ("A", T0 + 10)]
    # While A's lease holds, nobody else takes either.
    assert await second.claim_pending_runs("B", T0 + 9, T0 + 30, [WF], 10) == []

    # A writes the first step of one: it is Running, no longer for a claimer to take.
    version = await version_of(first, "went_on")
    start = [task("went_on", "b", "Running", attempt=2, started_at=T0 + 7)]
    assert await first.commit_step("went_on", version, "A", T0 + 40, start) is True
    assert (await first.get_run("went_on")).execution.status == "Running"
    # A died before the first step of the other: once its lease is over, B gets it.
    [rescued] = await second.claim_pending_runs("B", T0 + 11, T0 + 30, [WF], 10)
    assert (rescued.execution.id, rescued.execution.status) == ("died", "Pending")
    assert {t.task_name: t.status for t in rescued.tasks} == {"a": "Completed", "b": "NotStarted"}


async def test_concurrent_claims_of_pending_runs_are_disjoint(opened):
    first, second = await opened(), await opened()
    run_ids = {f"r{i}" for i in range(20)}
    for i, run_id in enumerate(sorted(run_ids)):
        await reopened_by_nobody(first, run_id, started_at=T0 + i)
    a, b = await asyncio.gather(
        first.claim_pending_runs("A", T0 + 100, T0 + 200, [WF], 15),
        second.claim_pending_runs("B", T0 + 100, T0 + 200, [WF], 15),
    )
    got_a, got_b = {r.execution.id for r in a}, {r.execution.id for r in b}
    assert not got_a & got_b
    assert got_a | got_b == run_ids


# ====================================================================== leases of tasks
async def test_renew_task_leases_extends_only_the_owners_listed_running_tasks(opened, backend):
    first, second = await opened(), await opened()
    await add_run(first, "r", [task("r", "x"), task("r", "y"), task("r", "w")], workflow="wfA")
    await add_run(first, "s", [task("s", "z")], workflow="wfB")
    assert len(claimed_keys(await first.claim_tasks("A", T0 + 1, T0 + 5, ["wfA"], 10, False, {}))) == 3
    assert claimed_keys(await second.claim_tasks("B", T0 + 1, T0 + 5, ["wfB"], 10, False, {})) == {("s", "z")}
    # A row A completed that still names A (a state plain writes of task rows can leave).
    await backend.raw("UPDATE task_executions SET status = 'Completed' WHERE execution_id = 'r' AND task_name = 'w'")

    await first.renew_task_leases("A", [("r", "x"), ("r", "w"), ("s", "z"), ("r", "nope")], T0 + 100)
    await first.renew_task_leases("A", [], T0 + 1000)
    assert await holders(backend, "r") == {
        "x": ("Running", "A", T0 + 100),
        "y": ("Running", "A", T0 + 5),
        "w": ("Completed", "A", T0 + 5),
    }
    assert await holders(backend, "s") == {"z": ("Running", "B", T0 + 5)}

    # Only the renewed task survives its old lease.
    taken = await second.claim_tasks("C", T0 + 50, T0 + 60, ["wfA", "wfB"], 10, True, {})
    assert claimed_keys(taken) == {("r", "y"), ("s", "z")}


async def test_release_leases_hands_running_tasks_back_at_once(opened, backend):
    first, second = await opened(), await opened()
    await add_run(first, "r1", [task("r1", "a"), task("r1", "b")], workflow="wfA")
    await add_run(first, "r2", [task("r2", "c")], workflow="wfB")
    await add_run(first, "r3", [task("r3", "d", "NotStarted")], workflow="wfA")
    [mine] = await first.claim_tasks("A", T0 + 1, T0 + 100, ["wfA"], 10, False, {})
    assert claimed_keys([mine]) == {("r1", "a"), ("r1", "b")}
    assert claimed_keys(await second.claim_tasks("B", T0 + 1, T0 + 100, ["wfB"], 10, False, {})) == {("r2", "c")}
    before = {r: await version_of(first, r) for r in ("r1", "r2", "r3")}

    await first.release_leases("A")
    await first.release_leases("nobody")  # nothing to release
    assert await holders(backend, "r1") == {"a": ("Ready", None, None), "b": ("Ready", None, None)}
    assert await holders(backend, "r2") == {"c": ("Running", "B", T0 + 100)}
    assert await version_of(first, "r1") > before["r1"]
    assert await version_of(first, "r2") == before["r2"]
    assert await version_of(first, "r3") == before["r3"]

    # Claimable at once, with every lease still live, and without a take-over.
    got = await second.claim_tasks("C", T0 + 2, T0 + 100, ["wfA", "wfB"], 10, False, {})
    assert claimed_keys(got) == {("r1", "a"), ("r1", "b")}
    # The releasing runner's late step is refused.
    assert await first.commit_step("r1", mine.run.version, "A", T0 + 100, [
        task("r1", "a", "Completed", attempt=1, completed_at=T0 + 3, finish_seq=1)]) is False
    assert (await holders(backend, "r1"))["a"] == ("Running", "C", T0 + 100)


# ====================================================================== ended_runs
async def test_ended_runs_lists_ended_and_unknown_runs_only(store):
    await add_run(store, "live", [task("live", "a")])
    await add_run(store, "pending", [task("pending", "a", "NotStarted")], status="Pending")
    await add_run(store, "done", [task("done", "a")])
    await add_run(store, "failed", [task("failed", "a")])
    assert await store.commit_step("done", await version_of(store, "done"), "A", T0 + 5, [
        task("done", "a", "Completed", attempt=1, completed_at=T0 + 2, finish_seq=1)],
        finished("done", T0 + 2)) is True
    await store.save_progress([], finished("failed", T0 + 3, status="Failed"))

    assert sorted(await store.ended_runs(["live", "pending", "done", "failed", "gone"])) == [
        "done", "failed", "gone"]
    assert await store.ended_runs(["live", "pending"]) == []
    assert await store.ended_runs(["gone"]) == ["gone"]
    assert await store.ended_runs([]) == []


# ====================================================================== listen
async def test_listen_pushes_new_work_and_ended_runs_from_other_stores(opened, backend):
    only_on(backend, "postgres", NOTIFY_ONLY)
    listener, writer = await opened(), await opened()
    notices = Notices()
    assert await listener.listen(notices) is True

    since = len(notices.got)
    await add_run(writer, "r", [task("r", "a"), task("r", "b", "NotStarted")])
    await notices.wait_for(lambda n: n.work, since)

    [claim] = await writer.claim_tasks("A", T0 + 1, T0 + 50, [WF], 10, False, {})
    since = len(notices.got)
    assert await writer.commit_step("r", claim.run.version, "A", T0 + 50, [
        task("r", "a", "Completed", attempt=1, completed_at=T0 + 2, finish_seq=1),
        task("r", "b", "Ready")]) is True
    await notices.wait_for(lambda n: n.work, since)

    [claim] = await writer.claim_tasks("A", T0 + 3, T0 + 50, [WF], 10, False, {})
    since = len(notices.got)
    await writer.release_leases("A")
    await notices.wait_for(lambda n: n.work, since)

    [claim] = await writer.claim_tasks("A", T0 + 4, T0 + 50, [WF], 10, False, {})
    since = len(notices.got)
    assert await writer.commit_step("r", claim.run.version, "A", T0 + 50, [
        task("r", "b", "Completed", attempt=2, completed_at=T0 + 5, finish_seq=2)],
        finished("r", T0 + 5)) is True
    await notices.wait_for(lambda n: n == Notice(ended_run="r"), since)
    assert all(n.ended_run in (None, "r") for n in notices.got)


async def test_a_fired_run_with_ready_work_is_announced(opened, backend):
    only_on(backend, "postgres", NOTIFY_ONLY)
    listener, writer = await opened(), await opened()
    notices = Notices()
    assert await listener.listen(notices) is True
    await writer.upsert_trigger_schedule("trig", WF, 1000, False, T0)
    since = len(notices.got)
    assert await writer.create_execution(execution("r"), [task("r", "a")], "creator", T0 + 5,
                                         FireRequest("trig", "h", True))
    await notices.wait_for(lambda n: n.work, since)


async def test_close_stops_listening(opened, backend):
    only_on(backend, "postgres", NOTIFY_ONLY)
    listener = await opened()
    assert await listener.listen(Notices()) is True
    await wait_until_sessions(backend, listener, 1)
    await listener.close()
    await wait_until_sessions(backend, listener, 0)
    await listener.close()  # idempotent


async def test_a_dropped_listen_connection_is_replaced_and_announces_possible_work(opened, backend):
    only_on(backend, "postgres", NOTIFY_ONLY)
    listener, writer = await opened(), await opened()
    notices = Notices()
    assert await listener.listen(notices) is True
    await wait_until_sessions(backend, listener, 1)

    since = len(notices.got)
    await backend.raw(  # the server drops the LISTEN session (a restart, a network cut...)
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE query = 'LISTEN \"{listener.channel}\"'"
    )
    # Notices sent while it was away are lost, so the new session announces possible work.
    await notices.wait_for(lambda n: n.work, since)
    await wait_until_sessions(backend, listener, 1)

    since = len(notices.got)
    await add_run(writer, "r", [task("r", "a")])
    await notices.wait_for(lambda n: n.work, since)


# ====================================================================== SQLite only
SQLITE_ONLY = "SQLite's own schema, URL and file"


async def test_a_sqlite_url_selects_how_work_is_shared(tmp_path):
    path = tmp_path / "shared.db"
    by_task = store_for_url(f"sqlite:///{path}?sharing=task")
    assert by_task.work_sharing is WorkSharing.BY_TASK and isinstance(by_task, ClaimStore)
    assert store_for_url(f"sqlite:///{path}?sharing=run").work_sharing is WorkSharing.BY_RUN
    assert store_for_url(f"sqlite:///{path}").work_sharing is WorkSharing.BY_RUN  # the default
    assert store_for_url("sqlite:///:memory:?sharing=task").work_sharing is WorkSharing.BY_TASK
    for value in ("tasks", "", "TASK"):
        with pytest.raises(ValueError, match=f"parameter 'sharing' has unknown value '{value}'"):
            store_for_url(f"sqlite:///{path}?sharing={value}")
    assert not path.exists()  # nothing was opened


async def test_only_a_by_task_sqlite_store_holds_the_running_rows_it_creates(backend, opened):
    only_on(backend, "sqlite", SQLITE_ONLY)
    by_task = await opened()
    by_run = SQLiteStore(backend.path)
    await by_run.open()
    try:
        assert by_run.work_sharing is WorkSharing.BY_RUN and isinstance(by_run, ClaimStore)
        await add_run(by_task, "t", [task("t", "a", "Running", attempt=1, started_at=T0),
                                     task("t", "b")], owner="A", lease_until=T0 + 9)
        await add_run(by_run, "r", [task("r", "a", "Running", attempt=1, started_at=T0),
                                    task("r", "b")], owner="A", lease_until=T0 + 9)
    finally:
        await by_run.close()
    assert await holders(backend, "t") == {"a": ("Running", "A", T0 + 9), "b": ("Ready", None, None)}
    assert await holders(backend, "r") == {"a": ("Running", None, None), "b": ("Ready", None, None)}


async def test_a_sqlite_file_keeps_one_way_of_sharing_while_it_has_unfinished_runs(backend, opened):
    """Runners sharing by run and by task on one file would run tasks twice: the file
    records its way, and another is refused (naming both) until no run is unfinished."""
    only_on(backend, "sqlite", SQLITE_ONLY)
    by_task = await opened()
    await add_run(by_task, "u", [task("u", "a", "Running", attempt=1, started_at=T0)], owner="A")
    by_run = SQLiteStore(backend.path)
    with pytest.raises(RuntimeError, match=r"share work by task \(URL parameter \?sharing=task\).*unfinished runs"):
        await by_run.open()
    ended = task("u", "a", "Completed", attempt=1, started_at=T0, completed_at=T0 + 1)
    await by_task.save_progress([ended], finished("u", T0 + 1, workflow=WF))
    await by_run.open()  # no run left unfinished: the file now shares by run
    try:
        assert await by_run.get_run("u") is not None
    finally:
        await by_run.close()
    again_by_task = SQLiteStore(backend.path, work_sharing=WorkSharing.BY_TASK)
    await again_by_task.open()  # switching back is allowed too (nothing unfinished)
    await again_by_task.close()


def claim_index_exists(path: str) -> bool:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'ix_tasks_claimable'"
        ).fetchone() is not None
    finally:
        conn.close()


async def test_only_a_sqlite_file_shared_by_task_has_the_index_of_claimable_tasks(backend, opened):
    """Runners sharing by run never claim: their file has no index of claimable tasks to
    update at every task's start and end; it is made again when the file is shared by task."""
    only_on(backend, "sqlite", SQLITE_ONLY)
    await opened()
    assert claim_index_exists(backend.path)
    by_run = SQLiteStore(backend.path)
    await by_run.open()
    try:
        assert not claim_index_exists(backend.path)
        await add_run(by_run, "r", [task("r", "a", "Running", attempt=1, started_at=T0)], owner="A",
                      lease_until=T0 + 9)
        await by_run.release_leases("A")  # no holder to look for, only the run's lease
        assert (await by_run.get_run("r")).tasks[0].status == "Running"
    finally:
        await by_run.close()
    assert not claim_index_exists(backend.path)
    ended = task("r", "a", "Completed", attempt=1, started_at=T0, completed_at=T0 + 1)
    by_run = SQLiteStore(backend.path)
    await by_run.open()
    try:
        await by_run.save_progress([ended], finished("r", T0 + 1, workflow=WF))
    finally:
        await by_run.close()
    again_by_task = SQLiteStore(backend.path, work_sharing=WorkSharing.BY_TASK)
    await again_by_task.open()
    try:
        assert claim_index_exists(backend.path)
    finally:
        await again_by_task.close()


async def test_claims_and_releases_read_their_rows_off_the_claimable_tasks_index(backend, opened):
    """The ready (and expired, or released) tasks, not every task of every running run."""
    only_on(backend, "sqlite", SQLITE_ONLY)
    await opened()
    params = {"now": T0, "names": "[]", "only": None, "limit": 1}
    conn = sqlite3.connect(backend.path)
    try:
        for sql in (sqlite_queries.PICK_READY_TASKS, sqlite_queries.PICK_EXPIRED_TASKS):
            plan = " / ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
            assert "SEARCH t USING" in plan and "ix_tasks_claimable" in plan, plan
        # A release, too, finds the Running rows there (the holder has no index of its own).
        plan = " / ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sqlite_queries.RELEASE_TASKS, ("A",)))
        assert "ix_tasks_claimable" in plan, plan
    finally:
        conn.close()


async def test_a_sqlite_database_of_the_previous_schema_is_upgraded_and_its_runs_shared_by_task(
    backend, monkeypatch,
):
    only_on(backend, "sqlite", SQLITE_ONLY)
    current = sqlite_queries.MIGRATIONS
    monkeypatch.setattr(sqlite_queries, "MIGRATIONS", [m for m in current if m[0] <= 6])
    old = backend.make()
    await old.open()
    await old.close()
    # Rows as the code of schema 6 wrote them: a run whose runner died with b Ready and c
    # Running (its lease was the run's), and a finished run.
    await backend.raw(
        "INSERT INTO workflow_executions (id, workflow_name, workflow_version, status, "
        f"input_context, started_at, owner, lease_until) VALUES ('old', '{WF}', 'v1', 'Running', "
        f"'{{}}', {T0}, 'dead', {T0 + 5}), ('done', '{WF}', 'v1', 'Completed', '{{}}', {T0 + 1}, "
        "NULL, NULL)"
    )
    await backend.raw(
        "INSERT INTO task_executions (execution_id, task_name, status, attempt, started_at, "
        f"completed_at, output_context, finish_seq) VALUES ('old', 'a', 'Completed', 1, {T0}, "
        f"{T0 + 1}, '{{\"a\": 1}}', 1), ('old', 'b', 'Ready', 0, NULL, NULL, NULL, NULL), "
        f"('old', 'c', 'Running', 1, {T0 + 1}, NULL, NULL, NULL), "
        "('old', 'd', 'NotStarted', 0, NULL, NULL, NULL, NULL), "
        f"('done', 'a', 'Completed', 1, {T0 + 1}, {T0 + 2}, '{{}}', 1)"
    )
    monkeypatch.setattr(sqlite_queries, "MIGRATIONS", current)

    store = backend.make()
    await store.open()
    try:
        assert [v for (v,) in await backend.raw("SELECT version FROM cloaca_schema_version ORDER BY version")] == backend.migrations
        assert [e.id for e in await store.list_executions(None, None, 10, 0)] == ["done", "old"]
        run = await store.get_run("old")
        assert run.version == 0 and run.execution.status == "Running"
        assert {t.task_name: t.status for t in run.tasks} == {
            "a": "Completed", "b": "Ready", "c": "Running", "d": "NotStarted"}
        assert run.tasks[0].output_context == '{"a": 1}'

        # The dead runner's Running task had no lease of its own: taken over at once.
        claims = await store.claim_tasks("new", T0 + 10, T0 + 60, [WF], 10, True, {})
        got = claimed_tasks(claims)
        assert set(got) == {("old", "b"), ("old", "c")}
        assert (got["old", "b"].attempt, got["old", "c"].attempt) == (1, 2)
        assert await version_of(store, "old") == 1
        assert await store.commit_step("old", 1, "new", T0 + 60, [
            task("old", "b", "Completed", attempt=1, completed_at=T0 + 11, finish_seq=2)]) is True
        assert (await store.get_run("done")).version == 0
    finally:
        await store.close()


async def test_commit_step_locked_on_sqlite_computes_again_when_another_process_wrote_first(
    backend, opened,
):
    """SQLite cannot hold its write lock while `compute` runs on the loop: a step refused
    because another process wrote meanwhile is computed again from the run read anew, with
    the rows the refused computation returned (as stored), and only that step is written."""
    only_on(backend, "sqlite", SQLITE_ONLY)
    store = await opened()
    await add_run(store, "r", [task("r", "a"), task("r", "b"), task("r", "c", "NotStarted")])
    await store.claim_tasks("me", T0 + 1, T0 + 50, [WF], 10, False, {})
    seen: list[StoredRun] = []

    def compute(stored: StoredRun):
        seen.append(stored)
        if len(seen) == 1:  # another process completes b (a step of version 1) meanwhile
            conn = sqlite3.connect(backend.path)
            with conn:
                conn.execute("UPDATE workflow_executions SET version = 1 WHERE id = 'r'")
                conn.execute("UPDATE task_executions SET status = 'Completed', owner = NULL, "
                             "lease_until = NULL, step_version = 1 WHERE task_name = 'b'")
            conn.close()
            return [task("r", "a", "Completed", attempt=1, finish_seq=1),
                    task("r", "c", "Running", attempt=1)], None
        return [task("r", "a", "Completed", attempt=1, finish_seq=2),
                task("r", "c", "Ready")], None

    assert await store.commit_step_locked("r", 0, ["a"], "me", T0 + 50, compute) is True
    first, second = seen
    assert first.version == 0 and [t.task_name for t in first.tasks] == ["a"]
    # Read anew: b as the other process left it, and a and c (which the refused step wrote)
    # as they are stored.
    assert second.version == 1
    assert {t.task_name: t.status for t in second.tasks} == {
        "a": "Running", "b": "Completed", "c": "NotStarted"}
    assert await version_of(store, "r") == 2
    assert {n: (t.status, t.finish_seq) for n, t in (await tasks_of(store, "r")).items()} == {
        "a": ("Completed", 2), "b": ("Completed", None), "c": ("Ready", None)}
    assert (await holders(backend, "r"))["c"] == ("Ready", None, None)


_CLAIMER = textwrap.dedent("""
    import asyncio, json, sys
    from cloaca._store.base import TaskRecord, WorkSharing
    from cloaca._store.sqlite import SQLiteStore

    async def main(path, owner, now, workflow):
        store = SQLiteStore(path, work_sharing=WorkSharing.BY_TASK)
        await store.open()
        print("ready", flush=True)
        sys.stdin.readline()
        got, computed = [], 0
        while True:
            work = await store.claim_tasks(owner, now, now + 1000, [workflow], 2, False, {})
            if not work:
                break
            for w in work:
                for t in w.tasks:
                    got.append([w.execution_id, t.task_name])
                    done = TaskRecord(w.execution_id, t.task_name, "Completed", attempt=t.attempt,
                                      started_at=t.started_at, completed_at=now + 1)

                    def compute(stored, done=done):
                        nonlocal computed
                        computed += 1
                        return [done], None

                    assert await store.commit_step_locked(w.execution_id, 0, [], owner, now + 1000, compute)
        await store.close()
        print(json.dumps({"got": got, "computed": computed}), flush=True)

    asyncio.run(main(*sys.argv[1:3], float(sys.argv[3]), sys.argv[4]))
""")


async def test_two_processes_sharing_one_sqlite_file_claim_and_complete_each_task_once(backend, opened):
    """Two processes claim the tasks of the same runs and complete each, every step written
    compare-and-set on the run's version while the other process writes the same runs."""
    only_on(backend, "sqlite", SQLITE_ONLY)
    store = await opened()
    runs = {f"r{i}": [f"t{j}" for j in range(8)] for i in range(15)}
    for i, (run_id, names) in enumerate(runs.items()):
        await add_run(store, run_id, [task(run_id, n) for n in names], started_at=T0 + i)
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CLAIMER, backend.path, owner, str(T0 + 1), WF,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ},
        )
        for owner in ("P1", "P2")
    ]
    try:
        for child in children:
            assert await asyncio.wait_for(child.stdout.readline(), 60) == b"ready\n"
        for child in children:
            child.stdin.write(b"go\n")
            await child.stdin.drain()
        outputs = [json.loads(await asyncio.wait_for(child.stdout.readline(), 120)) for child in children]
        assert [await child.wait() for child in children] == [0, 0]
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    got = [{tuple(k) for k in out["got"]} for out in outputs]
    assert sum(len(out["got"]) for out in outputs) == len(got[0] | got[1])  # none claimed twice
    assert not got[0] & got[1]
    assert got[0] | got[1] == {(r, n) for r, names in runs.items() for n in names}
    for run_id, names in runs.items():
        run = await store.get_run(run_id)
        assert {t.status for t in run.tasks} == {"Completed"}
        assert {t.attempt for t in run.tasks} == {1}
        assert run.version == len(names)  # one step per task, none lost, none twice
