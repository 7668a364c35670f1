"""A smoke test of the whole engine on the embedded SQLite store.

CI runs this file a second time in a venv holding the LOWEST version that pyproject.toml
declares for each runtime dependency (.ci/lowest_requirements.py), so that a declared range
is a range that works: a run, a trigger fire and a cron fire, on ":memory:" and on a file.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import cloaca
from cloaca import Context, DefaultRunner, DefaultRunnerConfig, TriggerResult
from cloaca._registry import REGISTRY

from support import poll_until

DATABASES = ("memory", "file")


@pytest.fixture(params=DATABASES)
def url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    return ":memory:" if request.param == "memory" else f"sqlite:///{tmp_path}/smoke.db"


def greeting_workflow(name: str) -> str:
    """A sync task then an async one: the thread hop and the loop both run user code."""
    with cloaca.WorkflowBuilder(name):

        @cloaca.task(id="hello")
        def hello(context: Context) -> Context:
            context.set("message", f"hello, {context.get('name')}")
            return context

        @cloaca.task(id="shout", dependencies=["hello"])
        async def shout(context: Context) -> Context:
            context.set("message", context.get("message").upper())
            return context

    return name


def test_a_run_completes_and_is_persisted(url, wf_name):
    workflow = greeting_workflow(wf_name())
    with DefaultRunner(url) as runner:
        result = runner.execute(workflow, Context({"name": "ada"}))
        assert result.status == "Completed"
        assert result.final_context.get("message") == "HELLO, ADA"
        stored = runner.get_execution(result.execution_id)
        assert stored is not None and stored.status == "Completed"
        assert [e["id"] for e in runner.list_executions(workflow)] == [result.execution_id]


@pytest.mark.asyncio
async def test_a_runner_bound_to_the_running_loop_runs_a_workflow(url, wf_name):
    workflow = greeting_workflow(wf_name())
    async with DefaultRunner(url) as runner:
        result = await runner.aexecute(workflow, Context({"name": "bob"}))
    assert result.status == "Completed"
    assert result.final_context.get("message") == "HELLO, BOB"


def test_a_trigger_fire_runs_its_workflow(url, wf_name):
    workflow = greeting_workflow(wf_name())
    trigger_name = wf_name("trigger")
    fired = threading.Event()

    @cloaca.trigger(workflow=workflow, name=trigger_name, poll_interval="50ms")
    def poll() -> TriggerResult:
        if fired.is_set():
            return TriggerResult.skip()
        fired.set()
        return TriggerResult.fire(Context({"name": "eve"}))

    try:
        with DefaultRunner(url) as runner:
            history = poll_until(
                lambda: [h for h in runner.get_trigger_execution_history(trigger_name)
                         if h["completed_at"] is not None],
                "the trigger's fire to complete",
            )
            run = poll_until(
                lambda: _finished(runner, history[0]["workflow_execution_id"]),
                "the fired run to end",
            )
    finally:
        REGISTRY.remove_trigger(trigger_name)
    assert run.status == "Completed"
    assert run.final_context.get("message") == "HELLO, EVE"
    assert run.final_context.get("trigger_name") == trigger_name


def test_a_cron_schedule_fires_its_workflow(url, wf_name):
    workflow = greeting_workflow(wf_name())
    config = DefaultRunnerConfig(cron_poll_interval_seconds=1)
    with DefaultRunner.with_config(url, config) as runner:
        schedule_id = runner.register_cron_workflow(workflow, "* * * * * *", "Europe/Paris")
        schedule = runner.get_cron_schedule(schedule_id)
        assert schedule is not None and schedule["next_run_at"] is not None
        history = poll_until(
            lambda: [h for h in runner.get_cron_execution_history(schedule_id)
                     if h["workflow_execution_id"] is not None],
            "a cron fire to launch its run",
        )
        run = poll_until(
            lambda: _finished(runner, history[0]["workflow_execution_id"]), "the cron run to end"
        )
    assert run.status == "Completed"
    assert run.final_context.get("schedule_id") == schedule_id


def _finished(runner: DefaultRunner, execution_id: str) -> Any:
    run = runner.get_execution(execution_id)
    return run if run is not None and run.status in ("Completed", "Failed") else None
