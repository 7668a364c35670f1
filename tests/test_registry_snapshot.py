"""`Registry.snapshot()` / `Registry.restore()` and `remove_trigger`: declarations made after
a snapshot are forgotten by the registry *and* by live runners (their trigger pollers and cron
schedulers hear of removals the way they hear of registrations).

The only fixed sleeps are observation windows in which something must NOT happen (a removed
trigger polled again); their length changes how likely a regression is caught, not the result.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Iterator

import pytest

import cloaca
from cloaca import DefaultRunner, TriggerResult
from cloaca._registry import REGISTRY
from support import poll_until, wait_until

QUIET_SECONDS = 0.5
POLLS: Counter[str] = Counter()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def declare_workflow(name: str, task_id: str) -> None:
    with cloaca.WorkflowBuilder(name):
        @cloaca.task(id=task_id)
        def body(ctx):
            return ctx


def declare_counting_trigger(name: str, workflow: str, label: str, interval: str = "50ms") -> None:
    """A trigger that counts its polls under `label` and never fires."""

    @cloaca.trigger(name=name, workflow=workflow, poll_interval=interval)
    async def poll() -> TriggerResult:
        POLLS[label] += 1
        return TriggerResult.skip()


def assert_not_polled_any_more(label: str) -> None:
    time.sleep(0.1)  # a poll already running when the trigger was removed may still count
    before = POLLS[label]
    time.sleep(QUIET_SECONDS)
    assert POLLS[label] == before, f"{label} was polled after its trigger was removed"


@pytest.fixture
def workflow() -> Iterator[str]:
    """A workflow declared before the test's snapshot (it must survive every restore)."""
    name = unique("snapshot_wf")
    snapshot = REGISTRY.snapshot()
    declare_workflow(name, "base")
    yield name
    REGISTRY.restore(snapshot)


# ====================================================================== the registry itself
def test_restore_forgets_what_was_declared_after_the_snapshot_and_keeps_the_rest(workflow):
    kept_trigger = unique("kept")
    declare_counting_trigger(kept_trigger, workflow, kept_trigger, interval="1h")
    try:
        snapshot = REGISTRY.snapshot()
        new_workflow, new_trigger = unique("new_wf"), unique("new_trigger")
        declare_workflow(new_workflow, "step")
        declare_counting_trigger(new_trigger, new_workflow, new_trigger, interval="1h")
        assert REGISTRY.get_workflow(new_workflow) is not None and REGISTRY.get_trigger(new_trigger)

        REGISTRY.restore(snapshot)

        assert REGISTRY.get_workflow(new_workflow) is None
        assert new_workflow not in REGISTRY.workflow_names()
        assert REGISTRY.get_trigger(new_trigger) is None
        assert REGISTRY.tasks_in(f"public::embedded::{new_workflow}") == []
        assert REGISTRY.get_workflow(workflow) is not None
        assert REGISTRY.get_trigger(kept_trigger) is not None
    finally:
        REGISTRY.remove_trigger(kept_trigger)


def test_restore_puts_back_a_workflow_and_a_trigger_that_were_re_declared(workflow):
    original_workflow = REGISTRY.get_workflow(workflow)
    trigger_name = unique("redeclared")
    declare_counting_trigger(trigger_name, workflow, "original", interval="1h")
    original_trigger = REGISTRY.get_trigger(trigger_name)
    try:
        snapshot = REGISTRY.snapshot()
        declare_workflow(workflow, "other")
        declare_counting_trigger(trigger_name, workflow, "replacement", interval="1h")
        assert REGISTRY.get_trigger(trigger_name) is not original_trigger

        REGISTRY.restore(snapshot)

        assert REGISTRY.get_workflow(workflow) is original_workflow
        assert REGISTRY.get_trigger(trigger_name) is original_trigger
    finally:
        REGISTRY.remove_trigger(trigger_name)


def test_tasks_declared_after_the_snapshot_do_not_join_a_later_declaration_of_the_workflow():
    name = unique("task_leak")
    snapshot = REGISTRY.snapshot()
    try:
        declare_workflow(name, "first")
        REGISTRY.restore(snapshot)
        declare_workflow(name, "second")
        (only,) = REGISTRY.get_workflow(name).tasks.values()
        assert only.id == "second"
    finally:
        REGISTRY.restore(snapshot)


# ====================================================================== live runners hear of it
def test_a_sync_runner_stops_polling_a_trigger_forgotten_by_restore(workflow):
    label = unique("sync_live")
    with DefaultRunner(":memory:") as runner:
        snapshot = REGISTRY.snapshot()
        declare_counting_trigger(label, workflow, label)
        poll_until(lambda: POLLS[label] >= 2, "the trigger declared while the runner runs")

        REGISTRY.restore(snapshot)

        assert_not_polled_any_more(label)
        assert runner.get_trigger_schedule(label) is not None  # its history stays


@pytest.mark.asyncio
async def test_a_runner_on_the_tests_loop_stops_polling_a_trigger_forgotten_by_restore(workflow):
    label = unique("async_live")
    async with DefaultRunner(":memory:"):
        snapshot = REGISTRY.snapshot()
        declare_counting_trigger(label, workflow, label)
        await wait_until(lambda: POLLS[label] >= 2, "the trigger declared while the runner runs")

        REGISTRY.restore(snapshot)  # called on the runner's own loop: applied without blocking

        await asyncio.sleep(0.1)
        before = POLLS[label]
        await asyncio.sleep(QUIET_SECONDS)
        assert POLLS[label] == before


def test_a_live_runner_goes_back_to_the_former_definition_of_a_re_declared_trigger(workflow):
    name = unique("reverted")
    original, replacement = unique("original"), unique("replacement")
    declare_counting_trigger(name, workflow, original)
    try:
        with DefaultRunner(":memory:"):
            poll_until(lambda: POLLS[original] >= 1, "the original trigger")
            snapshot = REGISTRY.snapshot()
            declare_counting_trigger(name, workflow, replacement)
            poll_until(lambda: POLLS[replacement] >= 1, "the replacement")
            assert_not_polled_any_more(original)

            REGISTRY.restore(snapshot)

            polled = POLLS[original]
            poll_until(lambda: POLLS[original] > polled, "the original, polled again")
            assert_not_polled_any_more(replacement)
    finally:
        REGISTRY.remove_trigger(name)


def test_remove_trigger_reaches_a_live_runner(workflow):
    label = unique("removed")
    with DefaultRunner(":memory:"):
        declare_counting_trigger(label, workflow, label)
        poll_until(lambda: POLLS[label] >= 1, "the trigger")

        REGISTRY.remove_trigger(label)

        assert_not_polled_any_more(label)


def test_a_cron_trigger_forgotten_by_restore_loses_its_schedule(workflow):
    name = unique("cron_forgotten")
    with DefaultRunner(":memory:") as runner:
        snapshot = REGISTRY.snapshot()

        @cloaca.trigger(name=name, workflow=workflow, cron="0 3 * * *")
        def nightly() -> None:
            raise AssertionError("a cron trigger's function is never called")

        (schedule,) = [s for s in runner.list_cron_schedules() if s["workflow_name"] == workflow]
        assert schedule["cron_expression"] == "0 3 * * *"

        REGISTRY.restore(snapshot)

        assert [s for s in runner.list_cron_schedules() if s["workflow_name"] == workflow] == []


def test_a_cron_trigger_re_declared_as_a_polling_trigger_is_no_longer_scheduled(workflow):
    name = unique("cron_to_poll")
    label = unique("now_polled")
    snapshot = REGISTRY.snapshot()
    try:
        with DefaultRunner(":memory:") as runner:
            @cloaca.trigger(name=name, workflow=workflow, cron="0 3 * * *")
            def nightly() -> None:
                raise AssertionError("never called")

            assert len(runner.list_cron_schedules()) == 1
            declare_counting_trigger(name, workflow, label)
            assert runner.list_cron_schedules() == []
            poll_until(lambda: POLLS[label] >= 1, "the polling trigger of that name")
    finally:
        REGISTRY.restore(snapshot)
