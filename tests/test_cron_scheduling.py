"""Cron schedules firing (SPEC §7): live with a seconds field, exactly once across two
runners on one SQLite file, catch-up policies after a downtime, restarts, recovery of lost
hand-offs, daylight-saving days and cron-form triggers.

Everything but the live tests drives a fake clock (`DefaultRunner(..., _clock=clock)`) and
calls the scheduler's `fire_due()` / `recover_lost()` directly, so nothing depends on how
fast the machine is.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional
from zoneinfo import ZoneInfo

import pytest

import cloaca
from cloaca import Context, DefaultRunner, DefaultRunnerConfig
from cloaca._registry import REGISTRY
from cloaca._store.base import CronSlotClaim
from support import wait_until

UTC = timezone.utc
NEW_YORK = ZoneInfo("America/New_York")
REPO = Path(__file__).resolve().parents[1]

WF = "cronsched_recorded_wf"
RESERVED = {"scheduled_time", "schedule_id", "schedule_timezone", "schedule_expression"}

RUNS: dict[str, list[dict[str, Any]]] = defaultdict(list)
"""Input contexts of the runs of WF, keyed by the schedule id in their context."""

with cloaca.WorkflowBuilder(WF) as _builder:

    @cloaca.task(id="record")
    async def _record(context: Context) -> Context:
        RUNS[context.get("schedule_id")].append(context.to_dict())
        context.set("ran_by", os.getpid())
        return context


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def fire(runner: DefaultRunner) -> None:
    """Fire what is due at the runner's clock; wait until those launches were handed off."""
    assert runner._cron is not None
    await runner._cron.fire_due()
    await drain(runner)


async def drain(runner: DefaultRunner) -> None:
    assert runner._cron is not None
    while runner._cron._launches:
        await asyncio.gather(*list(runner._cron._launches), return_exceptions=True)


async def close(runner: DefaultRunner) -> None:
    await runner.ashutdown()


def launched(history: list[dict[str, Any]]) -> list[float]:
    """Slots (oldest first) of the history rows that launched, or tried to launch, a run."""
    return sorted(ts(r["scheduled_time"]) for r in history if r["outcome"] != "skipped")


def skipped(history: list[dict[str, Any]]) -> list[float]:
    return sorted(ts(r["scheduled_time"]) for r in history if r["outcome"] == "skipped")


def run_slots(sid: str) -> list[float]:
    return sorted(ts(c["scheduled_time"]) for c in RUNS[sid])


async def runner_at(url: str, clock: FakeClock, **config: Any) -> DefaultRunner:
    return await DefaultRunner(url, _config=DefaultRunnerConfig(**config), _clock=clock).astart()


# ====================================================================== live, real clock
@pytest.mark.asyncio
async def test_seconds_field_fires_live_with_the_schedule_context_and_stops_when_disabled(tmp_path):
    async with DefaultRunner(f"sqlite:///{tmp_path}/live.db") as runner:
        sid = await runner.aregister_cron_workflow(WF, "*/1 * * * * *", "UTC")
        await wait_until(lambda: len(RUNS[sid]) >= 3, "three runs of an every-second schedule")

        for context in RUNS[sid]:
            assert set(context) == RESERVED
            scheduled = datetime.fromisoformat(context["scheduled_time"])
            assert scheduled.utcoffset() == timedelta(0)
            assert scheduled.microsecond == 0  # a whole second
            assert context["schedule_id"] == sid
            assert context["schedule_timezone"] == "UTC"
            assert context["schedule_expression"] == "*/1 * * * * *"
        slots = [c["scheduled_time"] for c in RUNS[sid]]
        assert len(set(slots)) == len(slots)

        await runner.aset_cron_schedule_enabled(sid, False)
        # No slot can be claimed once the disable is committed: the history is final now.
        history = await runner.aget_cron_execution_history(sid)
        await wait_until(lambda: len(RUNS[sid]) == len(launched(history)), "in-flight runs")
        await asyncio.sleep(2.5)
        assert len(await runner.aget_cron_execution_history(sid)) == len(history)
        assert len(RUNS[sid]) == len(launched(history))
        assert (await runner.aget_cron_schedule(sid))["enabled"] is False

        await runner.aset_cron_schedule_enabled(sid, True)  # resumes
        await wait_until(lambda: len(RUNS[sid]) > len(launched(history)), "a run after re-enabling")
        await runner.adelete_cron_schedule(sid)


CHILD = textwrap.dedent(
    """
    import os, sys
    import cloaca

    with cloaca.WorkflowBuilder(sys.argv[2]):
        @cloaca.task(id="record")
        async def record(context):
            context.set("ran_by", os.getpid())
            return context

    runner = cloaca.DefaultRunner(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()  # the parent says when to stop
    runner.shutdown()
    print("done", flush=True)
    """
)


@pytest.mark.asyncio
async def test_two_processes_on_one_sqlite_file_fire_each_slot_once(tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db"
    async with DefaultRunner(url) as runner:
        sid = await runner.aregister_cron_workflow(WF, "*/1 * * * * *", "UTC")
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, url, WF, cwd=str(REPO),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert child.stdout is not None and child.stdin is not None
            line = await asyncio.wait_for(child.stdout.readline(), 30)
            assert line.strip() == b"ready", line
            await asyncio.sleep(4)  # both runners race for every slot
            await runner.aset_cron_schedule_enabled(sid, False)
            await asyncio.sleep(0.5)  # let the child hand off what it claimed
            child.stdin.write(b"stop\n")
            await child.stdin.drain()
            out, _ = await asyncio.wait_for(child.communicate(), 30)
            assert child.returncode == 0 and b"done" in out
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()

        history = await runner.aget_cron_execution_history(sid, limit=1000)
        assert len(launched(history)) >= 3
        slots = [r["scheduled_time"] for r in history]
        assert len(slots) == len(set(slots)), "a slot was claimed twice"
        linked = {r["workflow_execution_id"] for r in history if r["outcome"] != "skipped"}
        assert None not in linked, "a claimed slot was never handed off"

        async def all_runs_finished() -> Optional[list[dict[str, Any]]]:
            runs = await runner.alist_executions(workflow_name=WF, limit=1000)
            mine = []
            for run in runs:
                result = await runner.aget_execution(run["id"])
                if result.final_context.get("schedule_id") == sid:
                    if run["status"] != "Completed":
                        return None
                    mine.append({"id": run["id"], **result.final_context.to_dict()})
            return mine

        runs = await wait_until(all_runs_finished, "the runs of both processes")
        run_slots_seen = [r["scheduled_time"] for r in runs]
        assert len(run_slots_seen) == len(set(run_slots_seen)), "a slot ran twice"
        assert {r["id"] for r in runs} == linked
        assert sorted(run_slots_seen) == sorted(r["scheduled_time"] for r in history if r["outcome"] != "skipped")
        by_process = defaultdict(int)
        for r in runs:
            by_process[r["ran_by"]] += 1
        print(f"slots fired per process: {dict(by_process)}")


# ====================================================================== catch-up after downtime
T = utc(2026, 1, 5, 12, 0, 30)
MINUTES = [utc(2026, 1, 5, 12, m) for m in range(1, 11)]  # the slots missed by T + 10 min


async def downtime(tmp_path: Path, policy: str, **config: Any) -> tuple[DefaultRunner, str, FakeClock]:
    """Register at T, stop; start again at T + 10 minutes. Returns the new runner (open)."""
    url = f"sqlite:///{tmp_path}/catchup.db"
    clock = FakeClock(T)
    first = await runner_at(url, clock, **config)
    sid = await first.aregister_cron_workflow(WF, "* * * * *", "UTC", catchup_policy=policy)
    await close(first)
    assert RUNS[sid] == []

    clock.now = T + 600
    second = await runner_at(url, clock, **config)  # its scheduler fires what is due at once
    await fire(second)
    return second, sid, clock


async def settled_history(runner: DefaultRunner, sid: str, rows: int, runs: int) -> list[dict[str, Any]]:
    await wait_until(lambda: len(RUNS[sid]) >= runs, f"{runs} runs")
    history = await wait_until(
        lambda: _history_if(runner, sid, rows), f"{rows} history rows"
    )
    await drain(runner)
    return history


async def _history_if(runner: DefaultRunner, sid: str, rows: int) -> Optional[list[dict[str, Any]]]:
    history = await runner.aget_cron_execution_history(sid, limit=1000)
    return history if len(history) >= rows else None


@pytest.mark.asyncio
async def test_catchup_skip_runs_the_first_missed_slot_and_records_the_others(tmp_path):
    runner, sid, _ = await downtime(tmp_path, "skip")
    try:
        history = await settled_history(runner, sid, 10, 1)
        assert len(history) == 10
        assert launched(history) == MINUTES[:1]
        assert skipped(history) == MINUTES[1:]
        assert run_slots(sid) == MINUTES[:1]
        assert all(r["workflow_execution_id"] is None for r in history if r["outcome"] == "skipped")
        schedule = await runner.aget_cron_schedule(sid)
        assert ts(schedule["next_run_at"]) == utc(2026, 1, 5, 12, 11)
        assert ts(schedule["last_run_at"]) == T + 600
    finally:
        await close(runner)


@pytest.mark.asyncio
async def test_catchup_run_all_runs_every_missed_slot(tmp_path):
    runner, sid, _ = await downtime(tmp_path, "run_all")
    try:
        history = await settled_history(runner, sid, 10, 10)
        assert launched(history) == MINUTES
        assert skipped(history) == []
        assert run_slots(sid) == MINUTES
        assert all(r["workflow_execution_id"] for r in history)
    finally:
        await close(runner)


@pytest.mark.asyncio
async def test_catchup_run_all_is_capped_by_cron_max_catchup_executions(tmp_path):
    runner, sid, _ = await downtime(tmp_path, "run_all", cron_max_catchup_executions=3)
    try:
        history = await settled_history(runner, sid, 10, 3)
        assert len(history) == 10
        assert launched(history) == MINUTES[:3]
        assert skipped(history) == MINUTES[3:]
        assert run_slots(sid) == MINUTES[:3]
    finally:
        await close(runner)


@pytest.mark.asyncio
@pytest.mark.parametrize("policy, runs", [("skip", 1), ("run_all", 10)])
async def test_a_restart_never_runs_a_slot_again(tmp_path, policy, runs):
    runner, sid, clock = await downtime(tmp_path, policy)
    await settled_history(runner, sid, 10, runs)
    await close(runner)
    before = await _rows(tmp_path, sid, clock)

    url = f"sqlite:///{tmp_path}/catchup.db"
    again = await runner_at(url, clock)  # same clock: nothing new is due
    try:
        await fire(again)
        await asyncio.sleep(0.2)
        assert await again.aget_cron_execution_history(sid, limit=1000) == before
        assert len(RUNS[sid]) == runs

        # The slots already claimed cannot be claimed again, even by a stale reader.
        claim = CronSlotClaim(sid, MINUTES[0], MINUTES[1], [MINUTES[0]], [])
        assert await again._store.claim_cron_slots(claim, clock.now) is None

        clock.now = utc(2026, 1, 5, 12, 11, 30)  # one new slot, and only it, fires
        await fire(again)
        await wait_until(lambda: len(RUNS[sid]) == runs + 1, "the next slot's run")
        history = await again.aget_cron_execution_history(sid, limit=1000)
        assert len(history) == 11
        assert max(launched(history)) == utc(2026, 1, 5, 12, 11)
        assert run_slots(sid)[-1] == utc(2026, 1, 5, 12, 11)
    finally:
        await close(again)


@pytest.mark.asyncio
async def test_re_enabling_a_schedule_whose_next_run_passed_runs_it_once(tmp_path):
    clock = FakeClock(T)
    runner = await runner_at(f"sqlite:///{tmp_path}/reenable.db", clock)
    try:
        sid = await runner.aregister_cron_workflow(WF, "* * * * *", "UTC")
        await runner.aset_cron_schedule_enabled(sid, False)
        clock.now = T + 600
        await fire(runner)
        assert await runner.aget_cron_execution_history(sid) == []  # paused: nothing fires

        await runner.aset_cron_schedule_enabled(sid, True)
        await fire(runner)
        await wait_until(lambda: RUNS[sid], "the run after re-enabling")
        history = await runner.aget_cron_execution_history(sid, limit=1000)
        assert launched(history) == MINUTES[:1]
        assert run_slots(sid) == MINUTES[:1]
        assert ts((await runner.aget_cron_schedule(sid))["next_run_at"]) == utc(2026, 1, 5, 12, 11)
    finally:
        await close(runner)


async def _rows(tmp_path: Path, sid: str, clock: FakeClock) -> list[dict[str, Any]]:
    reader = await runner_at(f"sqlite:///{tmp_path}/catchup.db", clock, cron_enable_recovery=False)
    try:
        return await reader.aget_cron_execution_history(sid, limit=1000)
    finally:
        await close(reader)


# ====================================================================== lost hand-offs
RECOVERY = dict(cron_lost_threshold_minutes=10, cron_max_recovery_attempts=3,
                cron_max_recovery_age_seconds=3600)
SLOT = utc(2026, 1, 5, 13, 0)  # the daily 13:00 schedule's first slot after T


async def lose_a_hand_off(url: str, clock: FakeClock) -> str:
    """A runner claims SLOT of a daily schedule and dies before launching its run."""
    dying = await runner_at(url, clock, **RECOVERY)
    sid = await dying.aregister_cron_workflow(WF, "0 13 * * *", "UTC")
    assert dying._cron is not None
    dying._cron._spawn_launch = lambda *args: None  # the process "dies" right after the claim
    clock.now = SLOT
    await dying._cron.fire_due()
    await close(dying)
    (row,) = await _open_rows(url, sid, clock)
    assert row["workflow_execution_id"] is None and row["outcome"] == "pending"
    return sid


async def _open_rows(url: str, sid: str, clock: FakeClock) -> list[dict[str, Any]]:
    reader = await runner_at(url, clock, cron_enable_recovery=False)
    try:
        return await reader.aget_cron_execution_history(sid)
    finally:
        await close(reader)


@pytest.mark.asyncio
async def test_a_lost_hand_off_is_refired_once_older_than_the_threshold(tmp_path):
    url = f"sqlite:///{tmp_path}/lost.db"
    clock = FakeClock(T)
    sid = await lose_a_hand_off(url, clock)

    clock.now = SLOT + 9 * 60  # younger than cron_lost_threshold_minutes: left alone
    runner = await runner_at(url, clock, **RECOVERY)
    try:
        assert runner._cron is not None
        await runner._cron.recover_lost()
        await drain(runner)
        assert RUNS[sid] == []

        clock.now = SLOT + 11 * 60
        await runner._cron.recover_lost()
        await drain(runner)
        await wait_until(lambda: RUNS[sid], "the re-fired run")
        assert run_slots(sid) == [SLOT]
        (row,) = await runner.aget_cron_execution_history(sid)
        assert ts(row["scheduled_time"]) == SLOT
        assert row["workflow_execution_id"] is not None and row["outcome"] == "launched"
        result = await runner.aget_execution(row["workflow_execution_id"])
        assert result.final_context.get("scheduled_time") == row["scheduled_time"]

        # A slot whose run was started is never re-fired.
        await wait_until(lambda: _status(runner, row["workflow_execution_id"], "Completed"), "the run")
        clock.now = SLOT + 40 * 60
        await runner._cron.recover_lost()
        await drain(runner)
        await asyncio.sleep(0.1)
        assert len(RUNS[sid]) == 1
    finally:
        await close(runner)


async def _status(runner: DefaultRunner, execution_id: str, status: str) -> bool:
    result = await runner.aget_execution(execution_id)
    return result is not None and result.status == status


@pytest.mark.asyncio
async def test_a_lost_hand_off_is_retried_at_most_max_attempts_then_abandoned(tmp_path):
    url = f"sqlite:///{tmp_path}/attempts.db"
    clock = FakeClock(T)
    sid = await lose_a_hand_off(url, clock)
    runner = await runner_at(url, clock, **RECOVERY)
    try:
        assert runner._cron is not None
        refired: list[float] = []
        runner._cron._spawn_launch = lambda schedule, fire_id, slot: refired.append(slot)  # lost again

        for attempt in range(1, 6):
            clock.now += 11 * 60  # every retry is itself lost after the threshold
            await runner._cron.recover_lost()
            assert refired == [SLOT] * min(attempt, 3)
            (row,) = await runner.aget_cron_execution_history(sid)
            assert row["outcome"] == ("pending" if attempt <= 3 else "abandoned")
        assert row["error"] and "hand-off" in row["error"]
        assert row["workflow_execution_id"] is None
        assert RUNS[sid] == []
    finally:
        await close(runner)


@pytest.mark.asyncio
async def test_a_lost_hand_off_older_than_max_recovery_age_is_abandoned(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    clock = FakeClock(T)
    sid = await lose_a_hand_off(url, clock)
    clock.now = SLOT + 3600 + 1
    runner = await runner_at(url, clock, **RECOVERY)
    try:
        assert runner._cron is not None
        await runner._cron.recover_lost()
        await drain(runner)
        (row,) = await runner.aget_cron_execution_history(sid)
        assert row["outcome"] == "abandoned"
        assert row["workflow_execution_id"] is None
        await asyncio.sleep(0.1)
        assert RUNS[sid] == []
        # Abandoned stays abandoned.
        clock.now += 3600
        await runner._cron.recover_lost()
        await drain(runner)
        assert RUNS[sid] == []
    finally:
        await close(runner)


# ====================================================================== daylight saving
async def walk(runner: DefaultRunner, clock: FakeClock, until: float, step: float = 300) -> None:
    """Move the clock forward step by step, firing what is due at each step."""
    while clock.now < until:
        clock.now = min(clock.now + step, until)
        await fire(runner)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "expression, start, end, expected",
    [
        # Spring forward: 02:30 does not exist on 2026-03-08; it fires once, at the end of
        # the gap (03:00 EDT).
        ("30 2 * * *", utc(2026, 3, 7, 17), utc(2026, 3, 9, 17),
         [utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)]),
        # Fall back: 01:30 happens twice on 2026-11-01; it fires once, at the first (EDT).
        ("30 1 * * *", utc(2026, 10, 31, 16), utc(2026, 11, 2, 18),
         [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]),
    ],
    ids=["spring-forward", "fall-back"],
)
async def test_a_daily_new_york_schedule_runs_once_on_a_dst_day(tmp_path, expression, start, end, expected):
    clock = FakeClock(start)
    runner = await runner_at(f"sqlite:///{tmp_path}/dst.db", clock)
    try:
        sid = await runner.aregister_cron_workflow(WF, expression, "America/New_York")
        await walk(runner, clock, end)
        await wait_until(lambda: len(RUNS[sid]) >= len(expected), "the daily runs")
        history = await runner.aget_cron_execution_history(sid)
        assert launched(history) == expected
        assert skipped(history) == []
        assert run_slots(sid) == expected
        days = [datetime.fromtimestamp(s, NEW_YORK).date() for s in run_slots(sid)]
        assert len(days) == len(set(days)), "two runs on one local day"
    finally:
        await close(runner)


# ====================================================================== cron-form triggers
@pytest.mark.asyncio
async def test_a_cron_form_trigger_becomes_a_cron_schedule_and_fires(tmp_path):
    names = ["cronsched_trigger_live", "cronsched_trigger_at_start"]
    try:
        async with DefaultRunner(f"sqlite:///{tmp_path}/trigger_live.db") as live:
            @cloaca.trigger(name=names[0], cron="*/1 * * * * *", on=WF)
            def every_second() -> None:  # the body of a cron trigger is never called
                raise AssertionError("a cron trigger's function is not polled")

            schedules = await wait_until(live.alist_cron_schedules, "the trigger's schedule")
            (schedule,) = schedules
            assert (schedule["workflow_name"], schedule["cron_expression"], schedule["timezone"]) == (
                WF, "*/1 * * * * *", "UTC")
            sid = schedule["id"]
            await wait_until(lambda: len(RUNS[sid]) >= 2, "two runs of the cron trigger")
            assert all(c["schedule_expression"] == "*/1 * * * * *" for c in RUNS[sid])
            assert await live.aget_trigger_schedule(names[0]) is None  # not a polling trigger
            await live.adelete_cron_schedule(sid)
        REGISTRY.remove_trigger(names[0])

        # A trigger declared before a runner starts is scheduled by that runner.
        @cloaca.trigger(name=names[1], cron="0 9 * * MON", timezone="Europe/Paris", on=WF)
        def weekly() -> None:
            raise AssertionError("never polled")

        clock = FakeClock(utc(2026, 1, 5, 12))  # Monday, 13:00 in Paris
        later = await runner_at(f"sqlite:///{tmp_path}/trigger_start.db", clock)
        try:
            (schedule,) = await later.alist_cron_schedules()
            assert (schedule["cron_expression"], schedule["timezone"]) == ("0 9 * * MON", "Europe/Paris")
            assert ts(schedule["next_run_at"]) == utc(2026, 1, 12, 8)
        finally:
            await close(later)
    finally:
        for name in names:
            REGISTRY.remove_trigger(name)


# ====================================================================== regressions
@pytest.mark.asyncio
async def test_shutdown_right_after_a_rearm_does_not_hang(tmp_path):
    """On Python 3.11, asyncio.wait_for swallowed the cancellation from stop() when the
    scheduler's wake event had just been set, so shutdown hung after register/update/etc."""
    hung = 0
    for yields in range(2):
        runner = await DefaultRunner(f"sqlite:///{tmp_path}/rearm{yields}.db").astart()
        await asyncio.sleep(0.2)  # the scheduler is asleep, waiting for its wake event
        assert runner._cron is not None
        runner._cron.rearm()  # what every register/update/enable/delete call does
        for _ in range(yields):
            await asyncio.sleep(0)
        shutdown = asyncio.ensure_future(runner.ashutdown())
        done, _ = await asyncio.wait([shutdown], timeout=3)
        if not done:
            hung += 1
            for task in runner._cron._tasks:  # unstick it so the test can end
                task.cancel()
            await shutdown
    assert hung == 0, f"{hung} of 2 shutdowns hung"
