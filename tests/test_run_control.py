"""Run control (SPEC A9): submit, get_result, cancel, retry_execution — on both stores.

Every test uses the `runner` fixture (in-memory SQLite, work shared by run; a fresh
PostgreSQL schema, work shared by task). Tasks that must stay running wait on a
`threading.Event` the test sets, so nothing depends on the machine's speed.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from support import poll_until

import cloaca
from cloaca import Context, DefaultRunner, WorkflowBuilder


def _status(runner: DefaultRunner, execution_id: str) -> str:
    result = runner.get_execution(execution_id)
    assert result is not None
    return result.status


def _tasks(runner: DefaultRunner, execution_id: str) -> dict[str, dict]:
    result = runner.get_execution(execution_id)
    assert result is not None
    return {t["task_name"]: t for t in result.task_results}


def _gated_chain(name: str, gate: threading.Event, started: threading.Event) -> None:
    """first -> blocked (waits on `gate`) -> last."""
    with WorkflowBuilder(name):

        @cloaca.task(id="first")
        def first(context):
            context.set("first", True)
            return context

        @cloaca.task(id="blocked", dependencies=["first"])
        def blocked(context):
            started.set()
            gate.wait(30)
            context.set("blocked", True)
            return context

        @cloaca.task(id="last", dependencies=["blocked"])
        def last(context):
            context.set("last", True)
            return context


# ====================================================================== submit / get_result
def test_submit_returns_a_persisted_id_and_get_result_waits_for_the_end(runner, wf_name):
    name, gate, started = wf_name(), threading.Event(), threading.Event()
    _gated_chain(name, gate, started)
    execution_id = runner.submit(name, Context({"n": 1}))
    assert isinstance(execution_id, str)
    assert runner.get_execution(execution_id) is not None  # persisted before submit returned
    started.wait(10)
    with pytest.raises(TimeoutError, match=execution_id):
        runner.get_result(execution_id, timeout=0.05)
    gate.set()
    result = runner.get_result(execution_id)
    assert result.status == "Completed"
    assert result.execution_id == execution_id
    assert result.final_context.to_dict() == {"n": 1, "first": True, "blocked": True, "last": True}
    # a finished run's result is read back from the store
    assert runner.get_result(execution_id, timeout=1).status == "Completed"


def test_get_result_of_an_unknown_id_is_a_value_error(runner):
    with pytest.raises(ValueError, match="Unknown execution id"):
        runner.get_result("no-such-run", timeout=1)


def test_get_result_rejects_a_negative_timeout(runner):
    with pytest.raises(ValueError, match="timeout"):
        runner.get_result("x", timeout=-1)


def test_submit_of_an_unknown_workflow_raises(runner):
    with pytest.raises(ValueError, match="not found"):
        runner.submit("no_such_workflow_anywhere", Context())


# ====================================================================== cancel
def test_cancel_stops_a_run_and_its_tasks_that_had_not_started_never_start(runner, wf_name):
    name, gate, started = wf_name(), threading.Event(), threading.Event()
    _gated_chain(name, gate, started)
    execution_id = runner.submit(name, Context())
    assert started.wait(10)
    assert runner.cancel(execution_id) is True
    result = runner.get_result(execution_id, timeout=10)
    assert result.status == "Cancelled"
    gate.set()  # the abandoned body ends; its result must be dropped
    tasks = _tasks(runner, execution_id)
    assert tasks["first"]["status"] == "Completed"
    assert tasks["blocked"]["status"] == "Cancelled"
    assert tasks["last"]["status"] == "Cancelled"
    assert tasks["last"]["attempt_count"] == 0  # never started
    # the final context is what had completed
    assert result.final_context.to_dict() == {"first": True}
    # cancelling an ended run changes nothing
    assert runner.cancel(execution_id) is False
    poll_until(lambda: _status(runner, execution_id) == "Cancelled", "the run to stay Cancelled", 1)
    assert _tasks(runner, execution_id)["last"]["status"] == "Cancelled"


def test_cancel_of_an_async_task_cancels_its_body(runner, wf_name):
    name = wf_name()
    body_cancelled = threading.Event()
    running = threading.Event()

    with WorkflowBuilder(name):

        @cloaca.task(id="sleeper")
        async def sleeper(context):
            running.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                body_cancelled.set()
                raise
            return context

    execution_id = runner.submit(name, Context())
    assert running.wait(10)
    assert runner.cancel(execution_id) is True
    assert runner.get_result(execution_id, timeout=10).status == "Cancelled"
    assert body_cancelled.wait(10)
    assert _tasks(runner, execution_id)["sleeper"]["status"] == "Cancelled"


def test_execute_returns_a_cancelled_result_when_the_run_is_cancelled(runner, wf_name):
    name, gate, started = wf_name(), threading.Event(), threading.Event()
    _gated_chain(name, gate, started)
    outcome: list = []
    waiter = threading.Thread(target=lambda: outcome.append(runner.execute(name, Context())))
    waiter.start()
    assert started.wait(10)
    [run] = runner.list_executions(workflow_name=name)
    assert runner.cancel(run["id"]) is True
    waiter.join(20)
    gate.set()
    assert outcome and outcome[0].status == "Cancelled"
    assert runner.list_executions(workflow_name=name, status="Cancelled")[0]["id"] == run["id"]


def test_cancel_of_an_unknown_id_is_a_value_error(runner):
    with pytest.raises(ValueError, match="Unknown execution id"):
        runner.cancel("no-such-run")


def test_a_cancel_racing_the_last_task_ends_the_run_one_way_or_the_other(runner, wf_name):
    """The last task's step and the cancel commit in some order; the run ends consistently."""
    name = wf_name()
    with WorkflowBuilder(name):

        @cloaca.task(id="only")
        async def only(context):
            context.set("done", True)
            return context

    outcomes = set()
    for _ in range(20):
        execution_id = runner.submit(name, Context())
        cancelled = runner.cancel(execution_id)
        result = runner.get_result(execution_id, timeout=10)
        task = _tasks(runner, execution_id)["only"]
        if cancelled:
            assert result.status == "Cancelled"
            assert task["status"] == "Cancelled"
        else:
            assert result.status == "Completed"
            assert task["status"] == "Completed"
        outcomes.add(result.status)
    assert outcomes <= {"Cancelled", "Completed"}


# ====================================================================== retry
# The failing tasks below wait 10 ms between attempts (1 s then 2 s by default): these tests
# count attempts, not their spacing (test_retry.py checks the delays).
def test_retry_resumes_a_failed_run_under_the_same_id_keeping_completed_tasks(runner, wf_name):
    name = wf_name()
    calls = {"first": 0, "flaky": 0}
    allow = threading.Event()

    with WorkflowBuilder(name):

        @cloaca.task(id="first")
        def first(context):
            calls["first"] += 1
            context.set("first", calls["first"])
            return context

        @cloaca.task(id="flaky", dependencies=["first"], retry_attempts=2, retry_delay_ms=10)
        def flaky(context):
            calls["flaky"] += 1
            if not allow.is_set():
                raise RuntimeError("not yet")
            context.set("flaky", "ok")
            return context

    failed = runner.execute(name, Context())
    assert failed.status == "Failed"
    assert calls == {"first": 1, "flaky": 2}
    before = _tasks(runner, failed.execution_id)
    assert before["flaky"]["attempt_count"] == 2

    allow.set()
    assert runner.retry_execution(failed.execution_id) == failed.execution_id
    result = runner.get_result(failed.execution_id, timeout=30)
    assert result.status == "Completed"
    assert calls == {"first": 1, "flaky": 3}  # first not run again
    assert result.final_context.to_dict() == {"first": 1, "flaky": "ok"}
    after = _tasks(runner, failed.execution_id)
    assert after["first"]["attempt_count"] == 1
    assert after["flaky"]["attempt_count"] == 3  # attempts count on
    assert result.start_time == failed.start_time  # the run keeps its history
    assert len(runner.list_executions(workflow_name=name)) == 1


def test_a_retried_task_gets_fresh_attempts(runner, wf_name):
    name = wf_name()
    calls = []

    with WorkflowBuilder(name):

        @cloaca.task(id="always_fails", retry_attempts=2, retry_delay_ms=10)
        def always_fails(context):
            calls.append(1)
            raise RuntimeError("boom")

    failed = runner.execute(name, Context())
    assert failed.status == "Failed" and len(calls) == 2
    runner.retry_execution(failed.execution_id)
    assert runner.get_result(failed.execution_id, timeout=30).status == "Failed"
    assert len(calls) == 4  # two fresh attempts, not zero
    assert _tasks(runner, failed.execution_id)["always_fails"]["attempt_count"] == 4


def test_retry_resumes_a_cancelled_run(runner, wf_name):
    name, gate, started = wf_name(), threading.Event(), threading.Event()
    _gated_chain(name, gate, started)
    execution_id = runner.submit(name, Context())
    assert started.wait(10)
    runner.cancel(execution_id)
    assert runner.get_result(execution_id, timeout=10).status == "Cancelled"
    runner.retry_execution(execution_id)
    # Gone on with here: Running once retry_execution returns (not Pending, as a run
    # reopened for another runner waits), whatever the work sharing.
    assert _status(runner, execution_id) == "Running"
    gate.set()
    result = runner.get_result(execution_id, timeout=30)
    assert result.status == "Completed"
    tasks = _tasks(runner, execution_id)
    assert tasks["first"]["attempt_count"] == 1
    assert tasks["blocked"]["attempt_count"] == 2
    assert tasks["last"]["attempt_count"] == 1


def test_retry_of_a_completed_or_running_run_is_a_value_error(runner, wf_name):
    name, gate, started = wf_name(), threading.Event(), threading.Event()
    _gated_chain(name, gate, started)
    execution_id = runner.submit(name, Context())
    assert started.wait(10)
    with pytest.raises(ValueError, match="Running"):
        runner.retry_execution(execution_id)
    gate.set()
    runner.get_result(execution_id, timeout=30)
    with pytest.raises(ValueError, match="Completed"):
        runner.retry_execution(execution_id)
    with pytest.raises(ValueError, match="Unknown execution id"):
        runner.retry_execution("no-such-run")


# ====================================================================== async twins
@pytest.mark.asyncio
async def test_async_twins_on_a_runner_bound_to_the_loop(wf_name):
    name = wf_name()
    release = asyncio.Event()

    with WorkflowBuilder(name):

        @cloaca.task(id="waits")
        async def waits(context):
            await release.wait()
            return context

    async with DefaultRunner(":memory:") as runner:
        first = await runner.asubmit(name, Context())
        assert await runner.acancel(first) is True
        assert (await runner.aget_result(first, timeout=10)).status == "Cancelled"
        release.set()
        assert await runner.aretry_execution(first) == first
        assert (await runner.aget_result(first, timeout=10)).status == "Completed"


# ====================================================================== history API (A5, A10)
def test_task_results_carry_the_short_name_and_the_namespace(runner, wf_name):
    name = wf_name()
    with WorkflowBuilder(name):

        @cloaca.task(id="transform")
        def transform(context):
            return context

    result = runner.execute(name, Context())
    [task] = result.task_results
    assert task["task_name"] == "transform"
    assert task["task_namespace"].endswith(f"::{name}::transform")
    assert task["traceback"] is None


def test_an_unknown_status_filter_lists_the_valid_ones(runner):
    with pytest.raises(ValueError, match="Completed, Failed, Cancelled"):
        runner.list_executions(status="Done")
