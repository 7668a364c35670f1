"""A user's suite: cron schedules tested with the fake clock, no sleeping. The module
overrides `cloaca_clock` to start at a fixed moment. Run by test_testing_plugin.py as
`test_clock.py`."""

from datetime import datetime, timezone

import pytest

import cloaca
from cloaca.testing import FakeClock, await_for_executions, wait_for_executions

with cloaca.WorkflowBuilder("backup"):

    @cloaca.task(id="dump")
    def dump(ctx):
        return ctx


@pytest.fixture
def cloaca_clock():
    return FakeClock(datetime(2026, 6, 1, 23, 58, tzinfo=timezone.utc))


def test_advancing_the_clock_fires_the_slot_that_became_due(cloaca_runner, cloaca_clock):
    schedule_id = cloaca_runner.register_cron_workflow("backup", "0 0 * * *", "UTC")
    cloaca_clock.advance(120)  # midnight

    (run,) = wait_for_executions(cloaca_runner, "backup", status="Completed")
    scheduled = cloaca_runner.get_execution(run["id"]).final_context.get("scheduled_time")
    assert scheduled.startswith("2026-06-02T00:00:00")
    (fire,) = cloaca_runner.get_cron_execution_history(schedule_id)
    assert fire["workflow_execution_id"] == run["id"]


def test_a_jump_over_many_slots_follows_the_catch_up_policy(cloaca_runner, cloaca_clock):
    schedule_id = cloaca_runner.register_cron_workflow("backup", "* * * * *", "UTC")
    cloaca_clock.set(datetime(2026, 6, 2, 0, 7, 30, tzinfo=timezone.utc))  # 9 slots passed

    (run,) = wait_for_executions(cloaca_runner, "backup", status="Completed")
    history = cloaca_runner.get_cron_execution_history(schedule_id, limit=100)
    (launched,) = [f for f in history if f["workflow_execution_id"] == run["id"]]
    assert launched["scheduled_time"].startswith("2026-06-01T23:59:00")  # the first missed slot
    assert sorted(f["outcome"] for f in history if f is not launched) == ["skipped"] * 8


@pytest.mark.asyncio
async def test_the_fake_clock_drives_a_runner_on_the_tests_loop(cloaca_runner, cloaca_clock):
    await cloaca_runner.aregister_cron_workflow("backup", "0 0 * * *", "UTC")
    for days in (1, 2, 3):
        cloaca_clock.advance(24 * 3600)
        await await_for_executions(cloaca_runner, "backup", count=days, status="Completed")
