"""Runners on one database share the work of a run task by task (issue 7): a PostgreSQL
schema, and a SQLite file opened with `?sharing=task`.

Each runner here lives in its own thread with its own event loop, as in separate
processes; async task bodies run on their runner's loop thread, which tells who ran them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
from support import drop_postgres_schema_later, poll_until, wait_until

import cloaca
from cloaca import Context, DefaultRunner, DefaultRunnerConfig
from cloaca._engine.run_state import Run, Step, TaskState
from cloaca._engine.slots import SlotPool
from cloaca._store.base import ClaimedWork, StoredRun, TaskRecord, WorkSharing
from cloaca._store.sqlite import SQLiteStore
from cloaca.testing import isolated_registry

POSTGRES_URL = os.environ.get("CLOACA_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="CLOACA_TEST_POSTGRES_URL is not set")

LEAVES = [f"leaf{i}" for i in range(6)]
FANOUT = "pg_sharing_fanout_wf"
STALL = "pg_sharing_stall_wf"

executed_on: dict[str, list[int]] = {}
"""run key -> loop thread ids that ran a leaf of that run."""
stall_calls: list[int] = []
second_attempt_started = threading.Event()

with cloaca.WorkflowBuilder(FANOUT):

    @cloaca.task(id="root")
    async def _root(context: Context) -> Context:
        return context

    def _leaf(name: str) -> None:
        @cloaca.task(id=name, dependencies=["root"])
        async def leaf(context: Context) -> Context:
            import asyncio

            threads = executed_on.setdefault(context.get("key"), [])
            threads.append(threading.get_ident())
            # Hold this slot until a leaf runs in another runner (20 s at most): a submitter
            # with one slot then cannot run the leaves alone however slow the machine is.
            for _ in range(2000):
                if len(set(threads)) > 1:
                    break
                await asyncio.sleep(0.01)
            context.set(name, True)
            return context

    for _name in LEAVES:
        _leaf(_name)

with cloaca.WorkflowBuilder(STALL):

    @cloaca.task(id="stall")
    async def _stall(context: Context) -> Context:
        stall_calls.append(threading.get_ident())
        if len(stall_calls) == 1:
            # The first attempt blocks its runner's whole loop, as a stalled process would:
            # no lease renewal, until another runner has taken the task over.
            second_attempt_started.wait(60)
            context.set("by", "first attempt")
        else:
            second_attempt_started.set()
            context.set("by", "second attempt")
        return context


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"cloaca_share_{uuid.uuid4().hex[:10]}"
    yield name
    drop_postgres_schema_later(POSTGRES_URL, name)


def runner(schema: str, **config: object) -> DefaultRunner:
    settings = DefaultRunnerConfig(enable_cron_scheduling=False, **config)  # type: ignore[arg-type]
    return DefaultRunner(POSTGRES_URL, _config=settings, _schema=schema)  # type: ignore[arg-type]


Runners = Callable[..., DefaultRunner]
"""Opens one more runner on the test's database, with these DefaultRunnerConfig values."""


@pytest.fixture(params=[pytest.param("postgres", marks=needs_postgres), "sqlite"])
def runners(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runners]:
    """Runners on one database that share work by task: a fresh PostgreSQL schema, or a
    SQLite file opened with `?sharing=task`."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}?sharing=task"

        def open_sqlite(**config: object) -> DefaultRunner:
            settings = DefaultRunnerConfig(enable_cron_scheduling=False, **config)  # type: ignore[arg-type]
            return DefaultRunner.with_config(url, settings)

        yield open_sqlite
        return
    name = f"cloaca_share_{uuid.uuid4().hex[:10]}"
    yield lambda **config: runner(name, **config)
    drop_postgres_schema_later(POSTGRES_URL, name)


def test_ready_tasks_of_a_run_are_executed_by_other_runners(runners, request):
    key = f"shared-{request.node.callspec.id}"
    submitter = runners(max_concurrent_async_tasks=1)
    helper = runners(max_concurrent_async_tasks=4)
    try:
        result = submitter.execute(FANOUT, Context({"key": key}))
        assert result.status == "Completed", result.error_message
        assert {t["task_name"].rsplit("::", 1)[-1]: t["status"] for t in result.task_results} == {
            name: "Completed" for name in ["root", *LEAVES]
        }
        threads = executed_on[key]
        assert len(threads) == len(LEAVES)  # each leaf ran once
        # The submitter has one slot: the leaves it could not start were claimed by the helper.
        assert helper._bridge.loop_thread_id in threads, threads
        stored = helper.get_execution(result.execution_id)
        assert stored is not None and stored.status == "Completed"
        assert sorted(t["attempt_count"] for t in stored.task_results) == [1] * (len(LEAVES) + 1)
    finally:
        submitter.shutdown()
        helper.shutdown()


def test_a_stalled_runners_task_is_taken_over_and_its_late_result_is_refused(runners):
    stall_calls.clear()
    second_attempt_started.clear()
    stalled = runners(lease_seconds=0.5)
    rescuer = runners(lease_seconds=0.5)
    try:
        result = stalled.execute(STALL, Context({"key": "stall"}))
        # At least once: both attempts ran; exactly one completed the task in the store.
        assert len(stall_calls) == 2
        assert stall_calls == [stalled._bridge.loop_thread_id, rescuer._bridge.loop_thread_id]
        assert result.status == "Completed", result.error_message
        assert result.final_context.get("by") == "second attempt"
        [task] = result.task_results
        assert (task["status"], task["attempt_count"]) == ("Completed", 2)
        stored = poll_until(lambda: rescuer.get_execution(result.execution_id), "the run")
        assert stored.final_context.get("by") == "second attempt"
        # The stalled runner's late step, once it woke up, changed nothing.
        poll_until(lambda: not stalled._engine.active_tasks, "the stalled attempt to end")
        again = rescuer.get_execution(result.execution_id)
        assert again is not None and again.final_context.get("by") == "second attempt"
        assert again.task_results[0]["attempt_count"] == 2
    finally:
        second_attempt_started.set()
        stalled.shutdown()
        rescuer.shutdown()


HANDOFF = "pg_sharing_handoff_wf"
handoff_calls: list[int] = []
first_handoff_attempt_started = threading.Event()

with cloaca.WorkflowBuilder(HANDOFF):

    @cloaca.task(id="slow")
    async def _slow(context: Context) -> Context:
        import asyncio

        handoff_calls.append(threading.get_ident())
        if len(handoff_calls) == 1:
            first_handoff_attempt_started.set()
            await asyncio.sleep(60)  # cancelled by its runner's shutdown
        context.set("finished_by", threading.get_ident())
        return context

    @cloaca.task(id="after", dependencies=["slow"])
    async def _after(context: Context) -> Context:
        context.set("after", True)
        return context


def test_a_runner_shutting_down_hands_its_running_tasks_to_the_others_at_once(runners):
    handoff_calls.clear()
    first_handoff_attempt_started.clear()
    # A lease far longer than the test: only the release on shutdown can hand the task over.
    leaving = runners(lease_seconds=600.0, shutdown_grace_seconds=0.1)
    staying = runners(lease_seconds=600.0)
    errors: list[BaseException] = []

    def execute() -> None:
        try:
            leaving.execute(HANDOFF, Context({}))
        except BaseException as exc:  # the runner shuts down under it
            errors.append(exc)

    caller = threading.Thread(target=execute)
    try:
        caller.start()
        assert first_handoff_attempt_started.wait(20)
        [listed] = poll_until(lambda: staying.list_executions(workflow_name=HANDOFF), "the run")
        leaving.shutdown()
        caller.join(20)
        assert errors and "shut down" in str(errors[0])
        done = poll_until(
            lambda: (r := staying.get_execution(listed["id"])) is not None and r.status == "Completed" and r,
            "the other runner to finish the run",
        )
        assert done.final_context.get("after") is True
        assert done.final_context.get("finished_by") == staying._bridge.loop_thread_id
        attempts = {t["task_name"].rsplit("::", 1)[-1]: t["attempt_count"] for t in done.task_results}
        assert attempts == {"slow": 2, "after": 1}
    finally:
        leaving.shutdown()
        staying.shutdown()


RETRIED = "pg_sharing_retried_wf"
retried_calls: dict[str, list[int]] = {"first": [], "flaky": []}
healed = threading.Event()

with cloaca.WorkflowBuilder(RETRIED):

    @cloaca.task(id="first")
    async def _first_of_retried(context: Context) -> Context:
        retried_calls["first"].append(threading.get_ident())
        return context

    @cloaca.task(id="flaky", dependencies=["first"], retry_attempts=0)
    async def _flaky(context: Context) -> Context:
        retried_calls["flaky"].append(threading.get_ident())
        if not healed.is_set():
            raise RuntimeError("not healed yet")
        return context


def test_a_retry_whose_run_another_runner_started_first_lets_the_run_go_on_there(runners):
    for calls in retried_calls.values():
        calls.clear()
    healed.clear()
    # The retrier takes up no run it does not retry itself (the rescuer is the one that does).
    retrier = runners(lease_seconds=0.5, enable_recovery=False)
    rescuer = runners(lease_seconds=0.5)
    try:
        failed = retrier.execute(RETRIED, Context())
        assert failed.status == "Failed"
        healed.set()
        execution_id = failed.execution_id
        store = retrier._engine.store
        reopen = store.reset_for_retry

        async def started_by_the_rescuer() -> bool:
            stored = await store.get_run(execution_id)
            return stored is not None and stored.execution.status != "Pending"

        async def reopen_then_stall(*args: Any) -> Optional[StoredRun]:
            # The retrier stalls past its lease before writing the first step: the rescuer
            # takes the run up meanwhile and writes it.
            reopened = await reopen(*args)
            await wait_until(started_by_the_rescuer, "the rescuer to start the run")
            return reopened

        store.reset_for_retry = reopen_then_stall
        assert retrier.retry_execution(execution_id) == execution_id  # its own step was refused
        result = retrier.get_result(execution_id, timeout=30)
        assert result.status == "Completed", result.error_message
        assert retried_calls["first"] == [retried_calls["first"][0]]  # not run again
        assert retried_calls["flaky"][1:] == [rescuer._bridge.loop_thread_id]
        attempts = {t["task_name"].rsplit("::", 1)[-1]: t["attempt_count"] for t in result.task_results}
        assert attempts == {"first": 1, "flaky": 2}
        assert execution_id not in retrier._engine.runs
    finally:
        healed.set()
        retrier.shutdown()
        rescuer.shutdown()


@needs_postgres
def test_without_listen_runners_still_share_work_by_polling(schema, monkeypatch):
    from cloaca._store.postgres import PostgresStore

    async def cannot_listen(self, on_notice):  # e.g. a pooler that does not pass LISTEN on
        return False

    monkeypatch.setattr(PostgresStore, "listen", cannot_listen)
    submitter = runner(schema, max_concurrent_async_tasks=1)
    helper = runner(schema, max_concurrent_async_tasks=4)
    try:
        assert not helper._engine.sharing.claims.listening
        result = submitter.execute(FANOUT, Context({"key": "polled"}))
        assert result.status == "Completed", result.error_message
        assert len(executed_on["polled"]) == len(LEAVES)
        assert helper._bridge.loop_thread_id in executed_on["polled"]
    finally:
        submitter.shutdown()
        helper.shutdown()


DEDUPED = "pg_sharing_deduped_wf"
TICKED = "pg_sharing_ticked_wf"
deduped_spans: list[tuple[float, float]] = []

with cloaca.WorkflowBuilder(DEDUPED):

    @cloaca.task(id="hold")
    async def _hold(context: Context) -> Context:
        import asyncio
        import time

        start = time.monotonic()
        await asyncio.sleep(0.2)
        deduped_spans.append((start, time.monotonic()))
        return context

with cloaca.WorkflowBuilder(TICKED):

    @cloaca.task(id="tick")
    async def _tick(context: Context) -> Context:
        return context


@needs_postgres
def test_two_runners_fire_each_cron_slot_once_and_never_run_a_deduped_trigger_twice_at_once(schema):
    from cloaca._registry import REGISTRY

    trigger_name = f"pg_sharing_same_context_{uuid.uuid4().hex[:8]}"

    @cloaca.trigger(workflow=DEDUPED, name=trigger_name, poll_interval="50ms")
    def always_the_same() -> cloaca.TriggerResult:
        return cloaca.TriggerResult.fire(Context({"same": 1}))

    first = second = None
    try:
        first = DefaultRunner(POSTGRES_URL, _schema=schema)  # type: ignore[arg-type]
        second = DefaultRunner(POSTGRES_URL, _schema=schema)  # type: ignore[arg-type]
        schedule_id = first.register_cron_workflow(TICKED, "* * * * * *", "UTC")
        poll_until(lambda: len(deduped_spans) >= 4, "several trigger runs", timeout=30)
        poll_until(
            lambda: len([h for h in second.get_cron_execution_history(schedule_id)
                         if h["workflow_execution_id"]]) >= 3,
            "several cron slots", timeout=30,
        )
        first.set_trigger_enabled(trigger_name, False)
        second.set_trigger_enabled(trigger_name, False)
        first.set_cron_schedule_enabled(schedule_id, False)

        # Dedup held across the two runners: runs of the same context never overlapped.
        spans = sorted(deduped_spans)
        assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:])), spans

        # Every cron slot fired once: one fire per slot, one run per fire, no other runs. A
        # run and the link of its fire are written together; read the runs first, so that
        # every run listed has its fire in the history read after (which may hold newer ones).
        def slots_and_runs() -> tuple[list[float], set[str], set[str]]:
            runs = {r["id"] for r in first.list_executions(workflow_name=TICKED, limit=1000)}
            history = first.get_cron_execution_history(schedule_id, limit=1000)
            launched = {h["workflow_execution_id"] for h in history if h["workflow_execution_id"]}
            return [h["scheduled_time"] for h in history], runs, launched

        slots, runs, launched = poll_until(
            lambda: (found := slots_and_runs())[1] == found[2] and found,
            "every launched run to be listed once the schedule is off",
        )
        assert len(slots) == len(set(slots))
        assert len(runs) >= 3
    finally:
        REGISTRY.remove_trigger(trigger_name)
        for r in (first, second):
            if r is not None:
                r.shutdown()


# ---------------------------------------------------------------------------------------
# What one runner claims: the tasks of the workflows registered now, and, at once, those its
# own steps leave Ready.

WIDE_LEAVES = ("leaf0", "leaf1", "leaf2")
NUDGED = "sharing_nudged_wf"


async def _pass_on(context: Context) -> Context:
    return context


def declare_wide(name: str) -> None:
    """A root and three leaves: with one async slot, two leaves are left Ready to be claimed."""
    with cloaca.WorkflowBuilder(name):
        cloaca.task(id="root")(_pass_on)
        for leaf in WIDE_LEAVES:
            cloaca.task(id=leaf, dependencies=["root"])(_pass_on)


declare_wide(NUDGED)


def claimable_tasks_of(runner: DefaultRunner, workflow: str) -> set[str]:
    names = runner._engine.sharing.claimable_names()
    return {n for pool_names in names.values() for n in pool_names if n.split("::")[2] == workflow}


@pytest.mark.asyncio
async def test_the_tasks_of_a_workflow_registered_after_the_runner_started_are_claimed(runners):
    late = f"sharing_late_wf_{uuid.uuid4().hex[:8]}"
    runner = runners(max_concurrent_async_tasks=1)
    with isolated_registry():
        async with runner:
            assert claimable_tasks_of(runner, late) == set()  # what the claims of start() kept
            declare_wide(late)
            assert claimable_tasks_of(runner, late) == {
                f"public::embedded::{late}::{task}" for task in ("root", *WIDE_LEAVES)
            }
            result = await asyncio.wait_for(runner.aexecute(late, Context({})), 30)
            assert result.status == "Completed", result.error_message
            assert claimable_tasks_of(runner, late)
    assert claimable_tasks_of(runner, late) == set()  # forgotten with the registry's restore


@pytest.mark.asyncio
async def test_tasks_left_ready_by_a_step_are_claimed_by_its_runner_without_waiting_for_a_poll(tmp_path):
    # SQLite pushes no notices, and the poll is an hour away: only the step that left the
    # leaves Ready (one slot: one leaf starts at once) can set this runner claiming them.
    url = f"sqlite:///{tmp_path / 'nudged.db'}?sharing=task"
    config = DefaultRunnerConfig(enable_cron_scheduling=False, max_concurrent_async_tasks=1,
                                 scheduler_poll_interval_ms=3_600_000)
    async with DefaultRunner.with_config(url, config) as runner:
        result = await asyncio.wait_for(runner.aexecute(NUDGED, Context({})), 30)
        assert result.status == "Completed", result.error_message
        assert sorted(t["attempt_count"] for t in result.task_results) == [1] * (len(WIDE_LEAVES) + 1)


# ---------------------------------------------------------------------------------------
# A step computed again and again while others write (SQLite: `commit_step_locked` calls
# `compute` once per refused write): the engine goes on with the last step computed only.

RECOMPUTED = "sharing_recomputed_wf"
recomputed_bodies: list[str] = []
release_first: dict[str, asyncio.Event] = {}


async def _first(context: Context) -> Context:
    await release_first["event"].wait()
    return context


async def _elsewhere(context: Context) -> Context:
    raise AssertionError("claimed by the other writer: never executed by this runner")


def _joined(name: str) -> Callable[[Context], Context]:
    def body(context: Context) -> Context:
        recomputed_bodies.append(name)
        return context

    return body


with cloaca.WorkflowBuilder(RECOMPUTED):
    # One async slot: `first` takes it, `b1` and `b2` are left Ready for the other writer.
    cloaca.task(id="first")(_first)
    cloaca.task(id="b1")(_elsewhere)
    cloaca.task(id="b2")(_elsewhere)
    # Sync (two thread slots): `d` is unblocked by first + b1, `c` by first + b1 + b2.
    cloaca.task(id="d", dependencies=["first", "b1"])(_joined("d"))
    cloaca.task(id="c", dependencies=["first", "b1", "b2"])(_joined("c"))


def short(task_name: str) -> str:
    return task_name.rsplit("::", 1)[-1]


def free_slots(pool: SlotPool) -> int:
    taken = 0
    while pool.try_acquire():
        taken += 1
    for _ in range(taken):
        pool.release()
    return taken


class OtherWriter:
    """Another runner's connection to the SQLite file, writing as a runner does."""

    OWNER = "other-runner"

    def __init__(self, path: Path) -> None:
        self.store = SQLiteStore(str(path), work_sharing=WorkSharing.BY_TASK)

    async def claim(self, workflow: str, limit: int) -> list[ClaimedWork]:
        now = time.time()
        return await self.store.claim_tasks(self.OWNER, now, now + 600, [workflow], limit, False, {})

    async def complete(self, run_id: str, task: str) -> None:
        """Write the step of one of its tasks completing (against the run's current version)."""
        stored = await self.store.get_run(run_id)
        assert stored is not None
        row = next(t for t in stored.tasks if short(t.task_name) == task)
        done = dataclasses.replace(
            row, status="Completed", completed_at=time.time(), output_context=json.dumps({task: 1}),
            finish_seq=1 + max(t.finish_seq or 0 for t in stored.tasks),
        )
        assert await self.store.commit_step(run_id, stored.version, self.OWNER, time.time() + 600, [done])


def interleave(store: Any, run_id: str, other: OtherWriter, tasks: list[str]) -> list[dict[str, str]]:
    """Have `other` complete one of `tasks` just before each of the next writes of `run_id`
    by `store`; returns, as they are made, the steps `commit_step_locked` computes (task ->
    status)."""
    real_commit, real_locked = store.commit_step, store.commit_step_locked
    computed: list[dict[str, str]] = []

    async def commit_step(execution_id, version, owner, lease_until, rows, finished=None):
        if execution_id == run_id and tasks:
            await other.complete(run_id, tasks.pop(0))
        return await real_commit(execution_id, version, owner, lease_until, rows, finished)

    async def commit_step_locked(execution_id, since_version, task_names, owner, lease_until, compute):
        def recorded(stored: StoredRun):
            step = compute(stored)
            computed.append({} if step is None else {short(t.task_name): t.status for t in step[0]})
            return step

        return await real_locked(execution_id, since_version, task_names, owner, lease_until, recorded)

    store.commit_step, store.commit_step_locked = commit_step, commit_step_locked
    return computed


@pytest.mark.asyncio
async def test_a_step_computed_again_after_each_refused_write_is_the_last_computed(tmp_path):
    recomputed_bodies.clear()
    release_first["event"] = asyncio.Event()
    url = f"sqlite:///{tmp_path / 'recomputed.db'}?sharing=task"
    config = DefaultRunnerConfig(enable_cron_scheduling=False, max_concurrent_async_tasks=1,
                                 max_concurrent_tasks=2, lease_seconds=600.0)
    other = OtherWriter(tmp_path / "recomputed.db")
    async with DefaultRunner.with_config(url, config) as runner:
        engine = runner._engine
        running = asyncio.create_task(runner.aexecute(RECOMPUTED, Context({})))
        try:
            await other.store.open()
            [work] = await wait_until(lambda: other.claim(RECOMPUTED, 2), "b1 and b2 to be claimed elsewhere")
            assert sorted(short(t.task_name) for t in work.tasks) == ["b1", "b2"]
            # Nothing but the step under test may take this runner's slots (its claims hold
            # them across a query, which would change what the step can start).
            await engine.sharing.claims.stop()

            # b1 completes elsewhere before this runner writes first's outcome (refused: the
            # step is computed from the stored run), b2 between that computation and its
            # write (refused: computed again).
            computed = interleave(engine.store, work.execution_id, other, ["b1", "b2"])
            went_on_with: list[Step] = []  # the step the engine went on with after first's outcome
            commit = engine.sharing.commit

            async def recorded_commit(run: Run, state: TaskState, outcome: TaskRecord) -> Optional[Step]:
                step = await commit(run, state, outcome)
                if short(outcome.task_name) == "first" and step is not None:
                    went_on_with.append(step)
                return step

            engine.sharing.commit = recorded_commit  # type: ignore[method-assign]
            release_first["event"].set()
            [step] = await wait_until(lambda: went_on_with, "the step of first's outcome")

            assert computed == [
                {"first": "Completed", "d": "Running"},  # b1 done: d unblocked
                {"first": "Completed", "d": "Running", "c": "Running"},  # b2 done too: c as well
            ]
            assert {short(r.task_name): r.status for r in step.changed} == computed[-1]
            assert sorted(short(s.record.task_name) for s in step.to_start) == ["c", "d"]
            result = await asyncio.wait_for(running, 30)
            assert result.status == "Completed", result.error_message
            # The last step was the one executed: d and c once each, by this runner...
            assert sorted(recomputed_bodies) == ["c", "d"]
            # ... whose memory and the stored rows agree: every task completed at its first attempt.
            in_memory = {short(t["task_name"]): (t["status"], t["attempt_count"]) for t in result.task_results}
            stored = await other.store.get_run(work.execution_id)
            assert stored is not None
            assert {short(t.task_name): (t.status, t.attempt) for t in stored.tasks} == in_memory == {
                name: ("Completed", 1) for name in ("first", "b1", "b2", "c", "d")
            }
            # The slots the earlier computation took were given back.
            assert (free_slots(engine.async_slots), free_slots(engine.slots)) == (1, 2)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await other.store.close()
