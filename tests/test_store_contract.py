"""The Store contract (cloaca/_store/base.py), one suite run against every backend.

Each test runs on SQLite and on PostgreSQL (the latter only when CLOACA_TEST_POSTGRES_URL
is set; each PostgreSQL test gets a fresh schema, dropped afterwards). Tests that need two
runners use two store instances on the same database. A few set-ups that the Store API
cannot produce (a run that vanished, a newer schema version) use plain SQL on the tables,
whose names both backends share.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sqlite3
import uuid
from typing import Any, Optional, Sequence

import pytest
import pytest_asyncio

from cloaca._store.base import (
    CronScheduleRecord,
    CronSlotClaim,
    ExecutionRecord,
    FireRequest,
    RunLost,
    Store,
    StoredRun,
    TaskRecord,
    WorkSharing,
)
from cloaca._store.sqlite import SQLiteStore

from support import drop_postgres_schema_later

POSTGRES_URL = os.environ.get("CLOACA_TEST_POSTGRES_URL")
T0 = 1_700_000_000.25

pytestmark = pytest.mark.asyncio


class Backend:
    """A database both store instances of a test open, and raw SQL on it."""

    name: str

    def make(self) -> Store:
        raise NotImplementedError

    async def raw(self, sql: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def cleanup(self) -> None:
        pass


class SQLiteBackend(Backend):
    name = "sqlite"
    migrations = [1, 2, 3, 4, 5, 6, 7]  # version 3 is empty on SQLite (7 has its per-task claims)
    queries = "cloaca._store.sqlite_queries"
    previous_version = 2  # the schema the code before these migrations wrote
    list_indexes = "SELECT name FROM sqlite_master WHERE type = 'index'"

    def __init__(self, path: str, work_sharing: WorkSharing = WorkSharing.BY_RUN) -> None:
        self.path = path
        self.work_sharing = work_sharing

    def make(self) -> Store:
        return SQLiteStore(self.path, work_sharing=self.work_sharing)

    async def raw(self, sql: str) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            conn = sqlite3.connect(self.path, timeout=30)
            try:
                rows = conn.execute(sql).fetchall()
                conn.commit()
                return rows
            finally:
                conn.close()

        return await asyncio.to_thread(run)


class PostgresBackend(Backend):
    name = "postgres"
    migrations = [1, 2, 3, 4, 5, 6]  # 3: per-task claims (PostgreSQL shares work by task)
    queries = "cloaca._store.postgres_queries"
    previous_version = 3
    list_indexes = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"

    def __init__(self, url: str) -> None:
        self.url = url
        self.schema = f"cloaca_contract_{uuid.uuid4().hex[:12]}"

    def make(self) -> Store:
        from cloaca._store.postgres import PostgresStore

        return PostgresStore(self.url, schema=self.schema)

    async def raw(self, sql: str) -> list[tuple[Any, ...]]:
        import asyncpg

        conn = await asyncpg.connect(self.url, server_settings={"search_path": self.schema})
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    async def cleanup(self) -> None:
        drop_postgres_schema_later(self.url, self.schema)  # (its stores are closed by now)


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def backend(request, tmp_path):
    if request.param == "sqlite":
        b: Backend = SQLiteBackend(str(tmp_path / "contract.db"))
    else:
        if not POSTGRES_URL:
            pytest.skip("CLOACA_TEST_POSTGRES_URL is not set")
        b = PostgresBackend(POSTGRES_URL)
    try:
        yield b
    finally:
        await b.cleanup()


@pytest_asyncio.fixture
async def store(opened) -> Store:
    return await opened()


# ====================================================================== helpers
def execution(run_id: str, workflow: str = "wf", started_at: float = T0, **kw: Any) -> ExecutionRecord:
    return ExecutionRecord(
        id=run_id, workflow_name=workflow, workflow_version=kw.pop("version", "v1"),
        status=kw.pop("status", "Running"), input_context=kw.pop("input_context", '{"x": 1}'),
        started_at=started_at, **kw,
    )


def tasks_for(run_id: str, names: Sequence[str] = ("a", "b")) -> list[TaskRecord]:
    return [TaskRecord(run_id, name, "NotStarted") for name in names]


async def new_run(
    store: Store, run_id: str, workflow: str = "wf", started_at: float = T0, owner: str = "o1",
    lease_until: float = T0 + 5, fire: Optional[FireRequest] = None,
    link_fire_id: Optional[str] = None, names: Sequence[str] = ("a", "b"),
) -> bool:
    return await store.create_execution(
        execution(run_id, workflow, started_at), tasks_for(run_id, names), owner, lease_until,
        fire, link_fire_id,
    )


def finished(run_id: str, at: float, status: str = "Completed", workflow: str = "wf") -> ExecutionRecord:
    return execution(run_id, workflow, status=status, final_context='{"done": true}',
                     completed_at=at, error_message=None if status == "Completed" else "boom")


async def finish(store: Store, run_id: str, at: float, workflow: str = "wf") -> None:
    await store.save_progress([], finished(run_id, at, workflow=workflow))


def cron_record(
    sid: Optional[str] = None, workflow: str = "cwf", instance: Optional[str] = None,
    next_run_at: float = T0 + 60, created_at: float = T0, enabled: bool = True, **kw: Any,
) -> CronScheduleRecord:
    return CronScheduleRecord(
        id=sid or str(uuid.uuid4()), workflow_name=workflow, instance_name=instance,
        cron_expression=kw.pop("expression", "* * * * *"), timezone=kw.pop("timezone", "UTC"),
        enabled=enabled, catchup_policy=kw.pop("catchup_policy", "skip"),
        params=kw.pop("params", None), next_run_at=next_run_at, last_run_at=None,
        created_at=created_at, updated_at=created_at,
    )


def ids(records: Sequence[Any]) -> list[str]:
    return [r.id for r in records]


# ====================================================================== runs
async def test_create_execution_and_get_run_round_trip_every_field(store):
    e = execution("run-1", input_context='{"k": [1, 2]}', version="abc123")
    tasks = [
        TaskRecord("run-1", "first", "Running", attempt=1, started_at=T0 + 0.5),
        TaskRecord("run-1", "second", "Ready", attempt=2, not_before=T0 + 9.75,
                   error_message="transient"),
        TaskRecord("run-1", "third", "NotStarted"),
    ]
    assert await store.create_execution(e, tasks, "owner-1", T0 + 5) is True

    run = await store.get_run("run-1")
    assert run is not None
    assert run.execution == e
    assert sorted(run.tasks, key=lambda t: t.task_name) == sorted(tasks, key=lambda t: t.task_name)
    assert isinstance(run.execution.started_at, float)
    assert await store.get_run("no-such-run") is None


async def test_create_execution_with_no_tasks(store):
    assert await store.create_execution(execution("empty"), [], "o", T0 + 5)
    assert (await store.get_run("empty")) == StoredRun(execution("empty"), [])


async def test_save_progress_writes_task_rows_and_leaves_the_run_open(store):
    await new_run(store, "r")
    done = TaskRecord("r", "a", "Completed", attempt=1, started_at=T0 + 1, completed_at=T0 + 2,
                      output_context='{"a": 1}', finish_seq=1)
    running = TaskRecord("r", "b", "Running", attempt=3, started_at=T0 + 2.5, error_message="x")
    await store.save_progress([done, running])

    run = await store.get_run("r")
    assert {t.task_name: t for t in run.tasks} == {"a": done, "b": running}
    assert run.execution.status == "Running" and run.execution.completed_at is None
    # Still leased, so still owned: another runner cannot take it over before the lease ends.
    assert await store.claim_orphans("o2", T0 + 1, T0 + 10, ["wf"]) == []


async def test_save_progress_for_an_owner_writes_nothing_once_the_run_was_taken_over(store):
    await new_run(store, "r", owner="stalled", lease_until=T0 + 5)
    mine = TaskRecord("r", "a", "Running", attempt=1, started_at=T0 + 1)
    await store.save_progress([mine], None, "stalled")  # still its owner: written
    assert {t.task_name: t for t in (await store.get_run("r")).tasks}["a"] == mine

    assert ids([r.execution for r in await store.claim_orphans("rescuer", T0 + 6, T0 + 20, ["wf"])]) == ["r"]
    late = TaskRecord("r", "a", "Completed", attempt=1, completed_at=T0 + 7, output_context="{}",
                      finish_seq=1)
    with pytest.raises(RunLost) as caught:
        await store.save_progress([late], None, "stalled")
    assert caught.value.execution_id == "r"
    with pytest.raises(RunLost):
        await store.save_progress([], finished("r", T0 + 7), "stalled")
    with pytest.raises(RunLost):  # a run that does not exist is nobody's
        await store.save_progress([TaskRecord("gone", "a", "Completed")], None, "stalled")
    after = await store.get_run("r")
    assert after.execution.status == "Running"
    assert {t.task_name: t for t in after.tasks}["a"] == mine

    await store.save_progress([late], finished("r", T0 + 8), "rescuer")  # the new owner writes
    after = await store.get_run("r")
    assert after.execution.status == "Completed"
    assert {t.task_name: t for t in after.tasks}["a"] == late


async def test_save_progress_finished_closes_the_run_and_only_its_fires(store):
    await store.upsert_trigger_schedule("trig", "wf", 1000, False, T0)
    assert await new_run(store, "r1", fire=FireRequest("trig", "h1", True))
    assert await new_run(store, "r2", fire=FireRequest("trig", "h2", True))

    last = TaskRecord("r1", "b", "Completed", attempt=1, completed_at=T0 + 3, finish_seq=2)
    end = finished("r1", T0 + 3, status="Failed")
    await store.save_progress([last], end)

    run = await store.get_run("r1")
    assert run.execution == end
    assert [t for t in run.tasks if t.task_name == "b"] == [last]
    history = {f.workflow_execution_id: f for f in await store.trigger_history("trig", 10, 0)}
    assert history["r1"].completed_at == T0 + 3 and history["r1"].updated_at == T0 + 3
    assert history["r2"].completed_at is None
    # A finished run holds no lease and is never an orphan.
    assert ids(await store.list_executions(None, "Failed", 10, 0)) == ["r1"]
    assert [r.execution.id for r in await store.claim_orphans("o2", T0 + 100, T0 + 200, ["wf"])] == ["r2"]


async def test_finish_closes_a_linked_cron_fire(store):
    await store.create_cron_schedule(cron_record("s1", next_run_at=T0))
    [(fire_id, slot)] = await store.claim_cron_slots(CronSlotClaim("s1", T0, T0 + 60, [T0], []), T0)
    assert slot == T0
    assert await new_run(store, "r", link_fire_id=fire_id, started_at=T0 + 1)

    [fire] = await store.cron_history("s1", 10, 0)
    assert fire.id == fire_id and fire.workflow_execution_id == "r" and fire.updated_at == T0 + 1
    assert fire.completed_at is None
    await finish(store, "r", T0 + 2)
    [fire] = await store.cron_history("s1", 10, 0)
    assert fire.completed_at == T0 + 2 and fire.outcome is None


async def test_list_executions_filters_orders_newest_first_and_pages(store):
    await new_run(store, "a1", "A", T0 + 1)
    await new_run(store, "b1", "B", T0 + 2)
    await new_run(store, "a2", "A", T0 + 3)
    await new_run(store, "a3", "A", T0 + 3)  # same start time: the later insert comes first
    await new_run(store, "b2", "B", T0 + 0.5)
    await finish(store, "a2", T0 + 4, workflow="A")

    assert ids(await store.list_executions(None, None, 100, 0)) == ["a3", "a2", "b1", "a1", "b2"]
    assert ids(await store.list_executions("A", None, 100, 0)) == ["a3", "a2", "a1"]
    assert ids(await store.list_executions(None, "Completed", 100, 0)) == ["a2"]
    assert ids(await store.list_executions("A", "Running", 100, 0)) == ["a3", "a1"]
    assert ids(await store.list_executions("B", "Completed", 100, 0)) == []
    assert ids(await store.list_executions(None, None, 2, 1)) == ["a2", "b1"]
    assert ids(await store.list_executions(None, None, 2, 4)) == ["b2"]
    assert ids(await store.list_executions(None, None, 0, 0)) == []
    assert await store.list_executions("nope", None, 10, 0) == []


# ====================================================================== leases
async def test_claim_orphans_takes_expired_unowned_and_registered_runs_only(store):
    await new_run(store, "fresh", lease_until=T0 + 50)
    await new_run(store, "expired", lease_until=T0 + 5, names=("x", "y", "z"))
    await new_run(store, "released", owner="gone", lease_until=T0 + 50)
    await store.release_leases("gone")
    await new_run(store, "done", lease_until=T0 + 5)
    await finish(store, "done", T0 + 6)
    await new_run(store, "other", workflow="unregistered", lease_until=T0 + 5)

    claimed = await store.claim_orphans("o2", T0 + 10, T0 + 20, ["wf", "also-wf"])
    by_id = {r.execution.id: r for r in claimed}
    assert set(by_id) == {"expired", "released"}
    assert sorted(t.task_name for t in by_id["expired"].tasks) == ["x", "y", "z"]
    assert by_id["expired"].execution == execution("expired")

    # Now leased to o2 until T0+20: nobody else gets them before that, o2's lease can expire.
    assert await store.claim_orphans("o3", T0 + 19, T0 + 30, ["wf"]) == []
    again = await store.claim_orphans("o3", T0 + 21, T0 + 60, ["wf"])
    assert {r.execution.id for r in again} == {"expired", "released"}
    assert ids([r.execution for r in await store.claim_orphans("o4", T0 + 51, T0 + 60, ["wf"])]) == ["fresh"]
    assert await store.claim_orphans("o4", T0 + 1000, T0 + 2000, []) == []


async def test_concurrent_claims_from_two_stores_are_disjoint(opened):
    first, second = await opened(), await opened()
    for round_ in range(3):
        run_ids = {f"r{round_}-{i}" for i in range(25)}
        for run_id in sorted(run_ids):
            await new_run(first, run_id, lease_until=T0 + round_)
        a, b = await asyncio.gather(
            first.claim_orphans("A", T0 + 100, T0 + 10_000, ["wf"]),
            second.claim_orphans("B", T0 + 100, T0 + 10_000, ["wf"]),
        )
        got_a, got_b = {r.execution.id for r in a}, {r.execution.id for r in b}
        assert not got_a & got_b
        assert got_a | got_b == run_ids


async def test_renew_leases_extends_only_the_owners_unfinished_runs(store):
    await new_run(store, "mine", owner="me", lease_until=T0 + 5)
    await new_run(store, "theirs", owner="them", lease_until=T0 + 5)
    await new_run(store, "mine-done", owner="me", lease_until=T0 + 5)
    await finish(store, "mine-done", T0 + 1)
    await store.renew_leases("me", T0 + 100)

    claimed = await store.claim_orphans("thief", T0 + 50, T0 + 1000, ["wf"])
    assert ids([r.execution for r in claimed]) == ["theirs"]
    assert (await store.get_run("mine-done")).execution.status == "Completed"
    assert ids([r.execution for r in await store.claim_orphans("thief", T0 + 101, T0 + 200, ["wf"])]) == ["mine"]


async def test_release_leases_makes_runs_claimable_at_once(store):
    await new_run(store, "r1", owner="me", lease_until=T0 + 1000)
    await new_run(store, "r2", owner="other", lease_until=T0 + 1000)
    assert await store.claim_orphans("x", T0, T0 + 5, ["wf"]) == []
    await store.release_leases("me")
    assert ids([r.execution for r in await store.claim_orphans("x", T0, T0 + 5, ["wf"])]) == ["r1"]


async def failed_run(store: Store, run_id: str, workflow: str = "wf") -> None:
    """A run of two tasks that ended Failed: `a` Completed, `b` Failed."""
    await new_run(store, run_id, workflow)
    await store.save_progress([
        TaskRecord(run_id, "a", "Completed", attempt=1, started_at=T0, completed_at=T0 + 1,
                   output_context='{"a": 1}', finish_seq=1),
        TaskRecord(run_id, "b", "Failed", attempt=1, started_at=T0 + 1, completed_at=T0 + 2,
                   error_message="boom", finish_seq=2),
    ], finished(run_id, T0 + 2, "Failed", workflow))


async def test_a_run_reopened_by_nobody_waits_pending_until_claim_orphans_takes_it(store, backend):
    await failed_run(store, "nobodys")
    await failed_run(store, "mine")

    reopened = await store.reset_for_retry("nobodys", None, T0 + 3, None)
    assert reopened is not None
    assert (reopened.execution.status, reopened.execution.completed_at) == ("Pending", None)
    assert {t.task_name: t.status for t in reopened.tasks} == {"a": "Completed", "b": "NotStarted"}
    assert await backend.raw("SELECT owner, lease_until FROM workflow_executions WHERE id = 'nobodys'") == [
        (None, None)]
    assert await store.ended_runs(["nobodys"]) == []
    assert [e.id for e in await store.list_executions(None, "Pending", 10, 0)] == ["nobodys"]
    with pytest.raises(ValueError, match="it is Pending"):
        await store.reset_for_retry("nobodys", None, T0 + 3, None)
    # Reopened under an owner: leased; Running when work is shared by run, Pending until
    # its first step when shared by task (test_store_task_claims.py).
    mine = await store.reset_for_retry("mine", "me", T0 + 3, T0 + 50)
    assert mine.execution.status == ("Running" if store.work_sharing is WorkSharing.BY_RUN else "Pending")
    assert await backend.raw("SELECT owner, lease_until FROM workflow_executions WHERE id = 'mine'") == [
        ("me", T0 + 50)]

    # The first runner that has the workflow takes it over: it is Running from then on.
    assert await store.claim_orphans("o2", T0 + 4, T0 + 20, ["other-wf"]) == []
    [taken] = await store.claim_orphans("o2", T0 + 4, T0 + 20, ["wf"])
    assert (taken.execution.id, taken.execution.status) == ("nobodys", "Running")
    assert {t.task_name: t.status for t in taken.tasks} == {"a": "Completed", "b": "NotStarted"}
    assert (await store.get_run("nobodys")).execution.status == "Running"
    assert await backend.raw("SELECT owner, lease_until FROM workflow_executions WHERE id = 'nobodys'") == [
        ("o2", T0 + 20)]


# ====================================================================== trigger schedules
async def test_upsert_trigger_schedule_creates_then_updates_keeping_enabled(store):
    created = await store.upsert_trigger_schedule("t", "wf", 1000, False, T0)
    assert (created.trigger_name, created.workflow_name, created.poll_interval_ms) == ("t", "wf", 1000)
    assert created.allow_concurrent is False and created.enabled is True
    assert created.last_poll_at is None and created.created_at == created.updated_at == T0

    await store.set_trigger_enabled("t", False, T0 + 1)
    updated = await store.upsert_trigger_schedule("t", "wf2", 250, True, T0 + 2)
    assert updated.id == created.id
    assert (updated.workflow_name, updated.poll_interval_ms, updated.allow_concurrent) == ("wf2", 250, True)
    assert updated.enabled is False
    assert updated.created_at == T0 and updated.updated_at == T0 + 2
    assert await store.get_trigger_schedule("t") == updated


async def test_get_and_set_enabled_of_unknown_triggers(store):
    assert await store.get_trigger_schedule("missing") is None
    await store.set_trigger_enabled("missing", False, T0)  # ignored
    assert await store.list_trigger_schedules(False, 10, 0) == []
    await store.upsert_trigger_schedule("t", "wf", 1000, False, T0)
    await store.set_trigger_enabled("t", False, T0 + 1)
    record = await store.get_trigger_schedule("t")
    assert record.enabled is False and record.updated_at == T0 + 1
    await store.set_trigger_enabled("t", True, T0 + 2)
    assert (await store.get_trigger_schedule("t")).enabled is True


async def test_list_trigger_schedules_enabled_oldest_first_all_newest_first(store):
    names = ["t1", "t2", "t3", "t4", "t5"]
    for i, name in enumerate(names):
        await store.upsert_trigger_schedule(name, "wf", 1000, False, T0 + (i // 2))  # ties too
    await store.set_trigger_enabled("t3", False, T0 + 10)

    def names_of(records: Sequence[Any]) -> list[str]:
        return [r.trigger_name for r in records]

    assert names_of(await store.list_trigger_schedules(False, 100, 0)) == ["t5", "t4", "t3", "t2", "t1"]
    assert names_of(await store.list_trigger_schedules(True, 100, 0)) == ["t1", "t2", "t4", "t5"]
    assert names_of(await store.list_trigger_schedules(True, 2, 1)) == ["t2", "t4"]
    assert names_of(await store.list_trigger_schedules(False, 2, 1)) == ["t4", "t3"]
    assert names_of(await store.list_trigger_schedules(True, 10, 4)) == []


async def test_record_trigger_polls_sets_last_poll_at(store):
    for name in ("p1", "p2", "p3"):
        await store.upsert_trigger_schedule(name, "wf", 1000, False, T0)
    await store.record_trigger_polls([("p1", T0 + 1.5), ("p2", T0 + 2.5), ("unknown", T0 + 3)])
    await store.record_trigger_polls([])
    polled = {r.trigger_name: r.last_poll_at for r in await store.list_trigger_schedules(False, 10, 0)}
    assert polled == {"p1": T0 + 1.5, "p2": T0 + 2.5, "p3": None}
    await store.record_trigger_polls([("p1", T0 + 9)])
    assert (await store.get_trigger_schedule("p1")).last_poll_at == T0 + 9


# ====================================================================== fires and dedup
async def test_dedup_refuses_an_identical_open_fire_until_its_run_ends(store):
    await store.upsert_trigger_schedule("trig", "wf", 1000, False, T0)
    same = FireRequest("trig", "h", True)
    assert await new_run(store, "first", fire=same)
    assert await new_run(store, "dup", fire=same, started_at=T0 + 1) is False
    assert await store.get_run("dup") is None  # nothing written
    assert [f.workflow_execution_id for f in await store.trigger_history("trig", 10, 0)] == ["first"]

    assert await new_run(store, "other-hash", fire=FireRequest("trig", "h2", True), started_at=T0 + 2)
    assert await new_run(store, "not-dedup", fire=FireRequest("trig", "h", False), started_at=T0 + 3)

    await finish(store, "first", T0 + 4)
    # "not-dedup" is still open with the same hash: it blocks a deduplicated fire too.
    assert await new_run(store, "blocked", fire=same, started_at=T0 + 5) is False
    await finish(store, "not-dedup", T0 + 6)
    assert await new_run(store, "again", fire=same, started_at=T0 + 7)

    history = await store.trigger_history("trig", 10, 0)
    assert [f.workflow_execution_id for f in history] == ["again", "not-dedup", "other-hash", "first"]
    assert all(f.kind == "trigger" and f.claimed_at == f.created_at for f in history)
    assert history[-1].context_hash == "h" and history[-1].schedule_id == (
        await store.get_trigger_schedule("trig")).id


async def test_concurrent_identical_fires_from_two_stores_one_accepted(opened):
    first, second = await opened(), await opened()
    await first.upsert_trigger_schedule("trig", "wf", 1000, False, T0)
    hashes = [f"h{i}" for i in range(20)]

    async def fire(store: Store, run_id: str, h: str) -> bool:
        return await new_run(store, run_id, fire=FireRequest("trig", h, True))

    outcomes = await asyncio.gather(*(
        coro for h in hashes
        for coro in (fire(first, f"A-{h}", h), fire(second, f"B-{h}", h))
    ))
    for i, h in enumerate(hashes):
        assert sorted(outcomes[2 * i: 2 * i + 2]) == [False, True], h
    open_fires = await first.open_trigger_fires(T0)
    assert sorted(f.context_hash for f in open_fires) == sorted(hashes)
    assert len(await first.list_executions(None, None, 100, 0)) == len(hashes)


async def test_a_fire_of_an_unknown_trigger_is_not_recorded_but_the_run_is(store):
    assert await new_run(store, "r", fire=FireRequest("no-such-trigger", "h", True))
    assert await store.get_run("r") is not None
    assert await store.trigger_history("no-such-trigger", 10, 0) == []
    assert await store.open_trigger_fires(T0) == []


async def test_record_unlaunched_fire_is_closed_and_does_not_block_dedup(store):
    await store.upsert_trigger_schedule("trig", "wf", 1000, False, T0)
    await store.record_unlaunched_fire("trig", "h", T0 + 1)
    await store.record_unlaunched_fire("unknown-trigger", "h", T0 + 1)  # ignored

    [fire] = await store.trigger_history("trig", 10, 0)
    assert (fire.context_hash, fire.workflow_execution_id) == ("h", None)
    assert fire.completed_at == fire.claimed_at == fire.created_at == T0 + 1
    assert await store.open_trigger_fires(T0 + 2) == []
    assert await new_run(store, "r", fire=FireRequest("trig", "h", True))


async def test_open_trigger_fires_closes_ended_and_vanished_runs(store, backend):
    await store.upsert_trigger_schedule("trig", "wf", 1000, False, T0)
    for run_id in ("live", "ended", "vanished"):
        assert await new_run(store, run_id, fire=FireRequest("trig", run_id, True))
    # States the engine never leaves behind itself, but a crash or an operator can.
    await backend.raw("UPDATE workflow_executions SET status = 'Completed' WHERE id = 'ended'")
    await backend.raw("DELETE FROM workflow_executions WHERE id = 'vanished'")

    open_fires = await store.open_trigger_fires(T0 + 10)
    assert [(f.trigger_name, f.context_hash, f.workflow_execution_id) for f in open_fires] == [
        ("trig", "live", "live")
    ]
    history = {f.workflow_execution_id: f for f in await store.trigger_history("trig", 10, 0)}
    assert history["ended"].completed_at == T0 + 10 and history["vanished"].completed_at == T0 + 10
    assert history["live"].completed_at is None
    assert await new_run(store, "ended-again", fire=FireRequest("trig", "ended", True))


async def test_trigger_history_newest_first_with_paging(store):
    await store.upsert_trigger_schedule("trig", "wf", 1000, False, T0)
    await store.upsert_trigger_schedule("other", "wf", 1000, False, T0)
    for i in range(5):
        await store.record_unlaunched_fire("trig", f"h{i}", T0 + (i // 2))  # ties too
    await store.record_unlaunched_fire("other", "x", T0 + 100)

    hashes = [f.context_hash for f in await store.trigger_history("trig", 10, 0)]
    assert hashes == ["h4", "h3", "h2", "h1", "h0"]
    assert [f.context_hash for f in await store.trigger_history("trig", 2, 2)] == ["h2", "h1"]
    assert await store.trigger_history("unknown", 10, 0) == []


# ====================================================================== migrations
async def test_reopening_keeps_data_and_applies_no_migration_twice(backend):
    first = backend.make()
    await first.open()
    await new_run(first, "kept")
    await first.close()
    await first.close()  # idempotent

    second = backend.make()
    await second.open()
    try:
        assert (await second.get_run("kept")).execution.id == "kept"
    finally:
        await second.close()
    versions = await backend.raw("SELECT version FROM cloaca_schema_version ORDER BY version")
    assert [v for (v,) in versions] == backend.migrations


async def test_a_database_of_the_previous_schema_is_upgraded_with_its_runs_listed(
    backend, monkeypatch
):
    queries = importlib.import_module(backend.queries)
    current = queries.MIGRATIONS
    monkeypatch.setattr(queries, "MIGRATIONS", [m for m in current if m[0] <= backend.previous_version])
    old = backend.make()
    await old.open()
    await old.close()
    # Rows as the code of that schema wrote them (this code writes columns it does not have).
    for run_id, workflow, started, status in [("a1", "A", 1, "Running"), ("b1", "B", 2, "Running"),
                                              ("a2", "A", 3, "Completed")]:
        await backend.raw(
            "INSERT INTO workflow_executions (id, workflow_name, workflow_version, status, "
            f"input_context, started_at) VALUES ('{run_id}', '{workflow}', 'v1', '{status}', "
            f"'{{}}', {T0 + started})"
        )
    assert "ix_executions_workflow_status" not in {n for (n,) in await backend.raw(backend.list_indexes)}
    # One of the new indexes already there (made by hand, or a migration cut short): the
    # migration still applies.
    await backend.raw("CREATE INDEX ix_executions_status ON workflow_executions (status, started_at)")

    monkeypatch.setattr(queries, "MIGRATIONS", current)
    store = backend.make()
    await store.open()
    try:
        assert ids(await store.list_executions(None, None, 10, 0)) == ["a2", "b1", "a1"]
        assert ids(await store.list_executions("A", None, 10, 0)) == ["a2", "a1"]
        assert ids(await store.list_executions(None, "Running", 10, 0)) == ["b1", "a1"]
        assert ids(await store.list_executions("A", "Completed", 10, 0)) == ["a2"]
        await new_run(store, "a3", "A", T0 + 5)
        assert ids(await store.list_executions("A", "Running", 10, 0)) == ["a3", "a1"]
    finally:
        await store.close()
    versions = await backend.raw("SELECT version FROM cloaca_schema_version ORDER BY version")
    assert [v for (v,) in versions] == backend.migrations
    indexes = {n for (n,) in await backend.raw(backend.list_indexes)}
    assert {"ix_executions_status", "ix_executions_workflow_status"} <= indexes


async def test_stores_opening_a_new_database_together_both_succeed(backend):
    stores = [backend.make() for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        await new_run(stores[0], "r")
        assert (await stores[2].get_run("r")) is not None
    finally:
        for s in stores:
            await s.close()
    versions = await backend.raw("SELECT version FROM cloaca_schema_version ORDER BY version")
    assert [v for (v,) in versions] == backend.migrations


async def test_a_schema_version_newer_than_known_is_a_runtime_error(backend):
    first = backend.make()
    await first.open()
    await first.close()
    await backend.raw("INSERT INTO cloaca_schema_version (version) VALUES (999)")
    newer = backend.make()
    with pytest.raises(RuntimeError, match="999") as caught:
        await newer.open()
    assert newer.description in str(caught.value)
    await newer.close()


async def test_a_closed_store_refuses_calls(backend):
    s = backend.make()
    await s.open()
    await s.close()
    with pytest.raises(RuntimeError, match="closed"):
        await s.get_run("x")


# ====================================================================== cron
async def test_create_cron_schedule_and_get_round_trip(store):
    record = cron_record("s1", instance="nightly", params='{"p": 1}', catchup_policy="run_all",
                         expression="0 0 * * *", timezone="Europe/Paris")
    assert await store.create_cron_schedule(record) is True
    assert await store.get_cron_schedule("s1") == record
    assert await store.get_cron_schedule("missing") is None
    # (workflow, instance) is unique; unnamed schedules of one workflow are not.
    assert await store.create_cron_schedule(cron_record("s2", instance="nightly")) is False
    assert await store.get_cron_schedule("s2") is None
    assert await store.create_cron_schedule(cron_record("s3", instance="nightly", workflow="w2"))
    assert await store.create_cron_schedule(cron_record("s4"))
    assert await store.create_cron_schedule(cron_record("s5"))
    assert await store.create_cron_schedule(cron_record("s1")) is False  # id taken


async def test_list_cron_schedules_newest_first_enabled_filter_and_paging(store):
    for i in range(5):
        await store.create_cron_schedule(cron_record(f"s{i}", created_at=T0 + (i // 2)))
    await store.set_cron_enabled("s2", False, T0 + 10)
    assert ids(await store.list_cron_schedules(False, 100, 0)) == ["s4", "s3", "s2", "s1", "s0"]
    assert ids(await store.list_cron_schedules(True, 100, 0)) == ["s4", "s3", "s1", "s0"]
    assert ids(await store.list_cron_schedules(True, 2, 1)) == ["s3", "s1"]
    assert ids(await store.list_cron_schedules(False, 1, 4)) == ["s0"]


async def test_update_enable_and_delete_cron_schedules(store):
    await store.create_cron_schedule(cron_record("s1", next_run_at=T0 + 60))
    assert await store.update_cron_schedule("s1", "*/5 * * * *", "Asia/Tokyo", T0 + 300, T0 + 1)
    assert await store.update_cron_schedule("missing", "* * * * *", "UTC", T0, T0) is False
    s = await store.get_cron_schedule("s1")
    assert (s.cron_expression, s.timezone, s.next_run_at, s.updated_at) == (
        "*/5 * * * *", "Asia/Tokyo", T0 + 300, T0 + 1)

    await store.set_cron_enabled("s1", False, T0 + 2)
    s = await store.get_cron_schedule("s1")
    assert s.enabled is False and s.updated_at == T0 + 2 and s.next_run_at == T0 + 300
    await store.set_cron_enabled("missing", False, T0)  # ignored

    await store.set_cron_enabled("s1", True, T0 + 3)
    await store.claim_cron_slots(CronSlotClaim("s1", T0 + 300, T0 + 600, [T0 + 300], []), T0 + 300)
    assert len(await store.cron_history("s1", 10, 0)) == 1
    await store.delete_cron_schedule("s1")
    await store.delete_cron_schedule("missing")
    assert await store.get_cron_schedule("s1") is None
    assert await store.cron_history("s1", 10, 0) == []


async def test_upsert_cron_instance_keeps_enabled_and_recomputes_only_on_change(store):
    first = cron_record("s1", instance="i", next_run_at=T0 + 60, params='{"v": 1}')
    assert await store.upsert_cron_instance(first) == first
    await store.set_cron_enabled("s1", False, T0 + 1)

    same_expression = cron_record("other-id", instance="i", next_run_at=T0 + 999,
                                  params='{"v": 2}', created_at=T0 + 2)
    kept = await store.upsert_cron_instance(same_expression)
    assert kept.id == "s1" and kept.enabled is False
    assert kept.next_run_at == T0 + 60  # expression and timezone unchanged
    assert kept.params == '{"v": 2}' and kept.updated_at == T0 + 2
    assert await store.get_cron_schedule("s1") == kept
    assert await store.get_cron_schedule("other-id") is None

    changed = cron_record("third-id", instance="i", next_run_at=T0 + 500, expression="0 * * * *",
                          created_at=T0 + 3)
    moved = await store.upsert_cron_instance(changed)
    assert (moved.id, moved.cron_expression, moved.next_run_at) == ("s1", "0 * * * *", T0 + 500)
    assert await store.get_cron_schedule("s1") == moved


async def test_due_cron_schedules_and_next_run_at_ignore_disabled(store):
    assert await store.next_cron_run_at() is None
    await store.create_cron_schedule(cron_record("late", next_run_at=T0 + 30))
    await store.create_cron_schedule(cron_record("early", next_run_at=T0 + 10))
    await store.create_cron_schedule(cron_record("off", next_run_at=T0 + 5, enabled=False))
    await store.create_cron_schedule(cron_record("future", next_run_at=T0 + 100))
    assert await store.next_cron_run_at() == T0 + 10
    assert ids(await store.due_cron_schedules(T0 + 30)) == ["early", "late"]
    assert await store.due_cron_schedules(T0 + 9) == []


async def test_claim_cron_slots_advances_once_and_records_slots(store):
    await store.create_cron_schedule(cron_record("s", next_run_at=T0))
    claim = CronSlotClaim("s", T0, T0 + 240, launch=[T0, T0 + 60], skipped=[T0 + 120, T0 + 180])
    claimed = await store.claim_cron_slots(claim, T0 + 200)
    assert [slot for _, slot in claimed] == [T0, T0 + 60]
    assert len({fire_id for fire_id, _ in claimed}) == 2

    s = await store.get_cron_schedule("s")
    assert (s.next_run_at, s.last_run_at, s.updated_at) == (T0 + 240, T0 + 200, T0 + 200)
    assert await store.claim_cron_slots(claim, T0 + 201) is None  # moved on meanwhile

    history = await store.cron_history("s", 10, 0)
    assert [f.scheduled_time for f in history] == [T0 + 180, T0 + 120, T0 + 60, T0]
    skipped = [f for f in history if f.outcome == "skipped"]
    assert {f.scheduled_time for f in skipped} == {T0 + 120, T0 + 180}
    assert all(f.completed_at == T0 + 200 for f in skipped)
    launched = {f.id: f for f in history if f.outcome is None}
    assert set(launched) == {fire_id for fire_id, _ in claimed}
    assert all(f.completed_at is None and f.workflow_execution_id is None and f.kind == "cron"
               for f in launched.values())
    assert [f.scheduled_time for f in await store.cron_history("s", 2, 1)] == [T0 + 120, T0 + 60]


async def test_claim_cron_slots_refuses_disabled_missing_and_already_recorded(store):
    await store.create_cron_schedule(cron_record("off", next_run_at=T0, enabled=False))
    assert await store.claim_cron_slots(CronSlotClaim("off", T0, T0 + 60, [T0], []), T0) is None
    assert await store.claim_cron_slots(CronSlotClaim("gone", T0, T0 + 60, [T0], []), T0) is None

    await store.create_cron_schedule(cron_record("s", next_run_at=T0))
    assert len(await store.claim_cron_slots(CronSlotClaim("s", T0, T0 + 60, [T0], []), T0)) == 1
    # A schedule moved back to a slot already recorded advances, but the slot is not re-fired.
    await store.update_cron_schedule("s", "* * * * *", "UTC", T0, T0 + 1)
    assert await store.claim_cron_slots(CronSlotClaim("s", T0, T0 + 60, [T0], []), T0 + 2) == []
    assert len(await store.cron_history("s", 10, 0)) == 1


async def test_concurrent_cron_claims_from_two_stores_fire_once(opened):
    first, second = await opened(), await opened()
    for i in range(10):
        await first.create_cron_schedule(cron_record(f"s{i}", next_run_at=T0))
    claims = [CronSlotClaim(f"s{i}", T0, T0 + 60, [T0], []) for i in range(10)]
    outcomes = await asyncio.gather(*(
        coro for c in claims for coro in (first.claim_cron_slots(c, T0), second.claim_cron_slots(c, T0))
    ))
    for i in range(10):
        pair = outcomes[2 * i: 2 * i + 2]
        assert sorted(o is None for o in pair) == [False, True], pair
        assert len(await first.cron_history(f"s{i}", 10, 0)) == 1


async def test_close_schedule_fire_and_schedule_stats(store):
    await store.upsert_trigger_schedule("trig", "wf", 1000, False, T0)
    await store.create_cron_schedule(cron_record("s", next_run_at=T0))
    claim = CronSlotClaim("s", T0, T0 + 240, [T0, T0 + 60, T0 + 120], [T0 + 180])
    [(linked, _), (failed, _), (lost, _)] = await store.claim_cron_slots(claim, T0 + 10)
    assert await new_run(store, "r", link_fire_id=linked, started_at=T0 + 11)
    await store.close_schedule_fire(failed, T0 + 12, "failed", "no such workflow")
    assert await new_run(store, "t", fire=FireRequest("trig", "h", False), started_at=T0 + 13)

    fires = {f.id: f for f in await store.cron_history("s", 10, 0)}
    assert (fires[failed].outcome, fires[failed].error, fires[failed].completed_at) == (
        "failed", "no such workflow", T0 + 12)
    # 4 executions claimed since T0 (the skipped slot is not one): 2 launched runs (cron +
    # trigger); one unlinked, open and old.
    stats = await store.schedule_stats(T0, T0 + 100)
    assert (stats.total_executions, stats.successful_executions, stats.lost_executions) == (4, 2, 1)
    assert (await store.schedule_stats(T0, T0 + 5)).lost_executions == 0
    assert (await store.schedule_stats(T0 + 12, T0 + 100)).total_executions == 1
    empty = await store.schedule_stats(T0 + 1000, T0 + 1000)
    assert (empty.total_executions, empty.successful_executions, empty.lost_executions) == (0, 0, 0)
    assert lost in fires


async def test_lost_cron_fires_refires_abandons_and_skips_linked(store):
    await store.create_cron_schedule(cron_record("s", next_run_at=T0))
    [(old, _), (ran, _), (running, _)] = await store.claim_cron_slots(
        CronSlotClaim("s", T0, T0 + 180, [T0, T0 + 60, T0 + 120], []), T0)
    [(fresh, _)] = await store.claim_cron_slots(CronSlotClaim("s", T0 + 180, T0 + 240, [T0 + 180], []), T0 + 50)
    await new_run(store, "ran", link_fire_id=ran, started_at=T0 + 1)
    await finish(store, "ran", T0 + 2)
    await new_run(store, "running", link_fire_id=running, started_at=T0 + 1)

    # Unlinked and claimed before T0+100: "old" was created before the horizon T0+10.
    lost = await store.lost_cron_fires(T0 + 100, T0 + 10, 5, T0 + 100)
    assert [(f.id, f.attempts, f.claimed_at) for f, _ in lost] == [(fresh, 0, T0 + 50)]
    assert lost[0][1] == await store.get_cron_schedule("s")
    fires = {f.id: f for f in await store.cron_history("s", 10, 0)}
    assert (fires[old].outcome, fires[old].completed_at) == ("abandoned", T0 + 100)
    assert fires[old].error
    assert (fires[fresh].attempts, fires[fresh].claimed_at, fires[fresh].completed_at) == (1, T0 + 100, None)
    assert (fires[ran].outcome, fires[ran].completed_at) == (None, T0 + 2)
    assert (fires[running].outcome, fires[running].completed_at) == (None, None)

    # Re-claimed at T0+100, so not lost before then; later, out of attempts: abandoned.
    assert await store.lost_cron_fires(T0 + 100, T0 + 10, 5, T0 + 150) == []
    assert await store.lost_cron_fires(T0 + 200, T0 + 10, 1, T0 + 200) == []
    fires = {f.id: f for f in await store.cron_history("s", 10, 0)}
    assert (fires[fresh].outcome, fires[fresh].completed_at) == ("abandoned", T0 + 200)
    assert fires[running].completed_at is None


async def test_lost_cron_fires_closes_fires_whose_run_ended(store, backend):
    await store.create_cron_schedule(cron_record("s", next_run_at=T0))
    [(fire_id, _)] = await store.claim_cron_slots(CronSlotClaim("s", T0, T0 + 60, [T0], []), T0)
    await new_run(store, "r", link_fire_id=fire_id)
    await backend.raw("UPDATE workflow_executions SET status = 'Completed' WHERE id = 'r'")
    assert await store.lost_cron_fires(T0 + 100, T0 - 100, 5, T0 + 100) == []
    [fire] = await store.cron_history("s", 10, 0)
    assert fire.completed_at == T0 + 100 and fire.outcome is None
