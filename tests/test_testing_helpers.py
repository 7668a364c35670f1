"""cloaca.testing, in process (SPEC A14): poll_trigger, run_task, their async twins,
FakeClock driving a live runner's cron scheduler, and wait_for_executions.

The pytest plugin is tested from a user's point of view in test_testing_plugin.py; these
tests use its `cloaca_registry` fixture only to keep their declarations to themselves.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

import cloaca
from cloaca import Context, DefaultRunner, TriggerResult
from cloaca.testing import (
    FakeClock,
    apoll_trigger,
    arun_task,
    await_for_executions,
    poll_trigger,
    run_task,
    wait_for_executions,
)

NIGHT = datetime(2026, 3, 1, 1, 59, tzinfo=timezone.utc)
SETTLE_SECONDS = 0.3
"""Lets the cron scheduler go back to sleep (until its 30 s back-stop tick) after a schedule
was registered, so that only the clock's move can wake it in time."""


class Boom(Exception):
    pass


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# ====================================================================== poll_trigger
def test_poll_trigger_returns_what_a_sync_trigger_decided(cloaca_registry):
    seen = []

    @cloaca.trigger(name="fires", workflow="w")
    def fires():
        seen.append(threading.current_thread())
        return TriggerResult.fire(Context({"n": 1}))

    @cloaca.trigger(name="skips", workflow="w")
    def skips():
        return TriggerResult.skip()

    fired = poll_trigger("fires")
    assert fired.is_fire_result() and fired.context.to_dict() == {"n": 1}
    assert poll_trigger("skips").is_skip_result()
    assert seen and seen[0] is not threading.current_thread()  # sync code runs in a worker thread


def test_poll_trigger_turns_a_bool_into_fire_or_skip_as_a_runner_does(cloaca_registry):
    answers = iter([True, False])

    @cloaca.trigger(name="boolean", workflow="w")
    def boolean():
        return next(answers)

    first, second = poll_trigger("boolean"), poll_trigger("boolean")
    assert first.is_fire_result() and first.context is None
    assert second.is_skip_result()


def test_poll_trigger_awaits_an_async_trigger(cloaca_registry):
    @cloaca.trigger(name="async_fires", workflow="w")
    async def async_fires():
        await asyncio.sleep(0)
        return TriggerResult.fire(Context({"async": True}))

    assert poll_trigger("async_fires").context.get("async") is True


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_poll_trigger_lets_the_triggers_exception_through_unchanged(cloaca_registry, kind):
    error = Boom("the queue is down")
    if kind == "sync":
        def broken():
            raise error
    else:
        async def broken():
            raise error
    cloaca.trigger(name="broken", workflow="w")(broken)

    with pytest.raises(Boom) as raised:
        poll_trigger("broken")
    assert raised.value is error


def test_poll_trigger_refuses_what_it_cannot_poll(cloaca_registry):
    @cloaca.trigger(name="wrong_type", workflow="w")
    def wrong_type():
        return "yes"

    @cloaca.trigger(name="nightly", workflow="w", cron="0 3 * * *")
    def nightly():
        raise AssertionError("never called")

    with pytest.raises(TypeError, match="trigger 'wrong_type' returned str"):
        poll_trigger("wrong_type")
    with pytest.raises(ValueError, match="'nightly' is a cron trigger"):
        poll_trigger("nightly")
    with pytest.raises(ValueError, match=r"No trigger named 'missing'.*wrong_type"):
        poll_trigger("missing")


@pytest.mark.asyncio
async def test_apoll_trigger_is_the_async_twin_and_the_sync_one_refuses_to_block_the_loop(cloaca_registry):
    @cloaca.trigger(name="twin", workflow="w")
    async def twin():
        return True

    assert (await apoll_trigger("twin")).is_fire_result()
    with pytest.raises(RuntimeError, match=r"await cloaca\.testing\.apoll_trigger"):
        poll_trigger("twin")


# ====================================================================== run_task
@pytest.fixture
def shop(cloaca_registry):
    """Workflow 'shop': sync `add`, in-place `tag`, async `double`, `fail`, `handle_user`."""
    failure = Boom("out of stock")
    with cloaca.WorkflowBuilder("shop"):
        @cloaca.task(id="add")
        def add(ctx):
            return Context({"sum": ctx.get("a") + ctx.get("b")})

        @cloaca.task(id="tag")
        def tag(ctx):
            ctx.set("tagged", True)  # returns None: the context with this change is the output

        @cloaca.task(id="double")
        async def double(ctx):
            await asyncio.sleep(0)
            ctx.set("n", ctx.get("n") * 2)
            return ctx

        @cloaca.task(id="fail")
        def fail(ctx):
            raise failure

        @cloaca.task(id="handle_user")
        def handle_user(ctx, handle):
            assert handle.is_slot_held()
            handle.defer_until(lambda: True, poll_interval_ms=1)
            ctx.set("deferred", handle.is_slot_held())

        @cloaca.task(id="bad_return")
        async def bad_return(ctx):
            return {"not": "a context"}

    return failure


def test_run_task_returns_the_context_a_sync_body_returned(shop):
    assert run_task("shop", "add", Context({"a": 2, "b": 3})).to_dict() == {"sum": 5}


def test_run_task_of_a_body_returning_none_gives_its_in_place_changes(shop):
    given = Context({"x": 1})
    out = run_task("shop", "tag", given)
    assert out.to_dict() == {"x": 1, "tagged": True}
    assert given.to_dict() == {"x": 1}  # the body got a copy, as in a runner


def test_run_task_awaits_an_async_body_and_takes_a_dict_or_nothing(shop):
    assert run_task("shop", "double", {"n": 21}).get("n") == 42
    assert run_task("shop", "tag").to_dict() == {"tagged": True}
    assert run_task("shop", "public::embedded::shop::tag").get("tagged") is True


def test_run_task_lets_the_bodys_exception_through_unchanged(shop):
    with pytest.raises(Boom) as raised:
        run_task("shop", "fail", {})
    assert raised.value is shop


def test_run_task_gives_a_handle_to_a_body_that_asks_for_one(shop):
    assert run_task("shop", "handle_user", {}).get("deferred") is True


def test_run_task_names_what_is_wrong(shop):
    with pytest.raises(ValueError, match=r"No workflow named 'shopp'.*shop"):
        run_task("shopp", "add", {})
    with pytest.raises(ValueError, match=r"Workflow 'shop' has no task 'ad' \(its tasks: .*add"):
        run_task("shop", "ad", {})
    with pytest.raises(TypeError, match="task 'bad_return' of workflow 'shop' returned dict"):
        run_task("shop", "bad_return", {})
    with pytest.raises(TypeError, match="context must be a cloaca.Context"):
        run_task("shop", "add", [1, 2])


@pytest.mark.asyncio
async def test_arun_task_is_the_async_twin_and_the_sync_one_refuses_to_block_the_loop(shop):
    assert (await arun_task("shop", "double", {"n": 2})).get("n") == 4
    with pytest.raises(Boom):
        await arun_task("shop", "fail")
    with pytest.raises(RuntimeError, match=r"await cloaca\.testing\.arun_task"):
        run_task("shop", "add", {"a": 1, "b": 1})


# ====================================================================== FakeClock
def test_fake_clock_moves_only_when_told():
    clock = FakeClock(NIGHT)
    assert clock() == NIGHT.timestamp() and clock.now == NIGHT
    clock.advance(60)
    clock.advance(timedelta(minutes=1))
    assert clock.now == NIGHT + timedelta(minutes=2)
    clock.set(NIGHT.timestamp())
    assert clock.now == NIGHT


def test_fake_clock_tells_its_listeners_of_every_move_and_refuses_bad_moves():
    clock = FakeClock(0)
    moves = []
    listener = lambda: moves.append(clock())  # noqa: E731
    clock.add_jump_listener(listener)
    clock.advance(5)
    clock.set(100)
    clock.remove_jump_listener(listener)
    clock.advance(1)
    assert moves == [5.0, 100.0]
    with pytest.raises(ValueError, match="no timezone"):
        clock.set(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)
    with pytest.raises(TypeError, match="seconds or a timedelta"):
        clock.advance("1m")


def test_advancing_a_fake_clock_fires_the_due_cron_slot_of_a_sync_runner(cloaca_registry):
    name = unique("clock_sync")
    with cloaca.WorkflowBuilder(name):
        @cloaca.task(id="report")
        def report(ctx):
            return ctx

    clock = FakeClock(NIGHT)
    with DefaultRunner(":memory:", _clock=clock) as runner:
        runner.register_cron_workflow(name, "0 2 * * *", "UTC")
        time.sleep(SETTLE_SECONDS)
        clock.advance(60)
        # within 10 s, far below the scheduler's 30 s back-stop tick: the move woke it
        (run,) = wait_for_executions(runner, name, status="Completed", timeout=10)
        scheduled = runner.get_execution(run["id"]).final_context.get("scheduled_time")
        assert scheduled.startswith("2026-03-01T02:00:00")


@pytest.mark.asyncio
async def test_advancing_a_fake_clock_fires_every_due_slot_of_a_runner_on_the_loop(cloaca_registry):
    name = unique("clock_async")
    with cloaca.WorkflowBuilder(name):
        @cloaca.task(id="tick")
        async def tick(ctx):
            return ctx

    clock = FakeClock(NIGHT)
    async with DefaultRunner(":memory:", _clock=clock) as runner:
        await runner.aregister_cron_workflow(name, "* * * * *", "UTC", catchup_policy="run_all")
        await asyncio.sleep(SETTLE_SECONDS)
        clock.advance(3 * 60 + 30)  # 01:59 -> 02:02:30: slots 02:00, 02:01, 02:02
        runs = await await_for_executions(runner, name, count=3, status="Completed", timeout=10)
        results = [await runner.aget_execution(r["id"]) for r in runs]
        minutes = sorted(r.final_context.get("scheduled_time")[11:16] for r in results)
        assert minutes == ["02:00", "02:01", "02:02"]


@pytest.mark.asyncio
async def test_a_clock_set_back_while_the_scheduler_reads_due_slots_is_not_taken_for_the_old_time(
    cloaca_registry, monkeypatch
):
    """A test sets its clock back to a past night while the scheduler's pass that read the
    old time is still waiting for the database: that pass must not fire by the old time
    (it would skip every night up to then as missed, and the next night would never come)."""
    from cloaca._store.sqlite import SQLiteStore

    name = unique("clock_back")
    with cloaca.WorkflowBuilder(name):
        @cloaca.task(id="report")
        async def report(ctx):
            return ctx

    today = FakeClock(NIGHT + timedelta(days=270))
    async with DefaultRunner(":memory:", _clock=today) as runner:
        today.set(NIGHT)
        sid = await runner.aregister_cron_workflow(name, "0 2 * * *", "UTC")  # next: 03-01 02:00
        await asyncio.sleep(SETTLE_SECONDS)
        read_due = SQLiteStore.due_cron_schedules

        async def set_back_while_reading(self, now):
            due = await read_due(self, now)
            today.set(NIGHT)  # the test's move lands while this pass waits for its read
            return due

        monkeypatch.setattr(SQLiteStore, "due_cron_schedules", set_back_while_reading)
        today.set(NIGHT + timedelta(days=270))  # a pass reads the due slots by this time...
        await asyncio.sleep(SETTLE_SECONDS)
        monkeypatch.setattr(SQLiteStore, "due_cron_schedules", read_due)
        assert await runner.alist_executions(name) == []  # ...and fired nothing by it
        schedule = await runner.aget_cron_schedule(sid)
        assert schedule["next_run_at"].startswith("2026-03-01T02:00:00"), schedule
        for nights in (1, 2):
            today.advance(timedelta(days=1))
            runs = await await_for_executions(runner, name, count=nights, status="Completed")
        assert len(runs) == 2


# ====================================================================== wait_for_executions
def test_wait_for_executions_says_what_it_waited_for(cloaca_registry):
    with DefaultRunner(":memory:") as runner:
        with pytest.raises(TimeoutError, match=r"1 run\(s\) of workflow never_run with status Completed; found 0"):
            wait_for_executions(runner, "never_run", status="Completed", timeout=0.1)
        with pytest.raises(ValueError, match="count must be a positive int"):
            wait_for_executions(runner, "never_run", count=0)
