"""Observability (SPEC A11): tracebacks of failed attempts, log records and their extras,
OpenTelemetry spans and metrics (SDK in-memory exporter and metric reader)."""

from __future__ import annotations

import logging

import pytest

import cloaca
from cloaca import Context, WorkflowBuilder

pytest.importorskip("opentelemetry.sdk")
from opentelemetry import trace  # noqa: E402
from opentelemetry.trace import StatusCode  # noqa: E402
from support import otel_sdk  # noqa: E402

_EXPORTER, _READER = otel_sdk()


@pytest.fixture
def spans():
    _EXPORTER.clear()
    return _EXPORTER


def _failing_workflow(name: str) -> None:
    with WorkflowBuilder(name):

        @cloaca.task(id="prepare")
        def prepare(context):
            context.set("prepared", True)
            return context

        @cloaca.task(id="explode", dependencies=["prepare"], retry_attempts=2,
                     retry_delay_ms=1, retry_backoff="fixed", retry_jitter=False)
        def explode(context):
            helper_that_fails(context.get("prepared"))


def helper_that_fails(flag):
    raise KeyError(f"missing key while prepared={flag}")


# ====================================================================== tracebacks
def test_a_failed_attempt_stores_its_traceback_on_both_stores(runner, wf_name):
    name = wf_name()
    _failing_workflow(name)
    result = runner.execute(name, Context())
    assert result.status == "Failed"
    tasks = {t["task_name"]: t for t in result.task_results}
    assert tasks["prepare"]["traceback"] is None
    text = tasks["explode"]["traceback"]
    assert text.startswith("Traceback (most recent call last):")
    assert "helper_that_fails" in text and "KeyError" in text
    # it starts at the task's own code: the engine's and anyio's frames are left out
    first_frame = text.splitlines()[1]
    assert "test_observability.py" in first_frame and "in explode" in first_frame
    assert "_engine" not in text and "anyio" not in text
    # read back from the store, as another process would
    stored = runner.get_execution(result.execution_id)
    assert {t["task_name"]: t["traceback"] for t in stored.task_results}["explode"] == text


def test_a_huge_traceback_is_kept_to_its_last_64_kb(runner, wf_name):
    name = wf_name()
    with WorkflowBuilder(name):

        @cloaca.task(id="loud", retry_attempts=1)
        def loud(context):
            raise ValueError("x" * 200_000 + " the end")

    result = runner.execute(name, Context())
    text = result.task_results[0]["traceback"]
    assert len(text) <= 64 * 1024 + 10
    assert text.rstrip().endswith("the end")


# ====================================================================== logging
def test_log_records_carry_run_and_task_extras(runner, wf_name, caplog):
    name = wf_name()
    _failing_workflow(name)
    with caplog.at_level(logging.DEBUG, logger="cloaca"):
        result = runner.execute(name, Context())
    mine = [r for r in caplog.records if getattr(r, "execution_id", None) == result.execution_id]
    by_kind = {}
    for record in mine:
        by_kind.setdefault((record.name, record.levelno), []).append(record)
    failed_attempts = by_kind[("cloaca.task", logging.WARNING)]
    assert [r.attempt for r in failed_attempts] == [1, 2]
    assert all(r.task_name == "explode" and r.workflow_name == name for r in failed_attempts)
    assert all(r.exc_info and r.exc_info[0] is KeyError for r in failed_attempts)
    [retry] = by_kind[("cloaca.task", logging.INFO)]
    assert retry.task_name == "explode" and "retried" in retry.getMessage()
    assert ("cloaca.run", logging.DEBUG) in by_kind  # started
    [failed] = by_kind[("cloaca.run", logging.WARNING)]
    assert name in failed.getMessage() and failed.workflow_name == name


def test_the_cloaca_logger_has_only_a_null_handler():
    handlers = logging.getLogger("cloaca").handlers
    assert handlers and all(isinstance(h, logging.NullHandler) for h in handlers)


# ====================================================================== spans
def test_run_and_task_spans_nest_under_the_callers_span(runner, wf_name, spans):
    name = wf_name()
    _failing_workflow(name)
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("caller") as caller:
        result = runner.execute(name, Context())
    finished = {s.name: s for s in spans.get_finished_spans()}
    runs = [s for s in spans.get_finished_spans() if s.name == f"cloaca.run {name}"]
    assert len(runs) == 1
    run_span = runs[0]
    assert run_span.parent is not None and run_span.parent.span_id == caller.get_span_context().span_id
    assert run_span.context.trace_id == caller.get_span_context().trace_id
    assert run_span.attributes["cloaca.execution_id"] == result.execution_id
    assert run_span.attributes["cloaca.workflow_name"] == name
    assert run_span.status.status_code is StatusCode.ERROR

    tasks = [s for s in spans.get_finished_spans() if s.name.startswith("cloaca.task ")]
    assert sorted((s.name, s.attributes["cloaca.attempt"]) for s in tasks) == [
        ("cloaca.task explode", 1), ("cloaca.task explode", 2), ("cloaca.task prepare", 1),
    ]
    for span in tasks:
        assert span.parent.span_id == run_span.context.span_id
        assert span.attributes["cloaca.execution_id"] == result.execution_id
        assert span.attributes["cloaca.task_name"] in ("prepare", "explode")
    failed = [s for s in tasks if s.name == "cloaca.task explode"]
    for span in failed:
        assert span.status.status_code is StatusCode.ERROR
        [event] = [e for e in span.events if e.name == "exception"]
        assert event.attributes["exception.type"] == "KeyError"
    assert finished["cloaca.task prepare"].status.status_code is StatusCode.UNSET


def test_a_run_without_a_current_span_starts_its_own_trace(runner, wf_name, spans):
    name = wf_name()
    with WorkflowBuilder(name):

        @cloaca.task(id="only")
        def only(context):
            return context

    runner.execute(name, Context())
    [run_span] = [s for s in spans.get_finished_spans() if s.name == f"cloaca.run {name}"]
    assert run_span.parent is None


def test_user_spans_inside_a_task_nest_under_the_task_span(runner, wf_name, spans):
    name = wf_name()
    tracer = trace.get_tracer("test")
    with WorkflowBuilder(name):

        @cloaca.task(id="traced")
        async def traced(context):
            with tracer.start_as_current_span("inside"):
                pass
            return context

    runner.execute(name, Context())
    [task] = [s for s in spans.get_finished_spans() if s.name == "cloaca.task traced"]
    [inside] = [s for s in spans.get_finished_spans() if s.name == "inside"]
    assert inside.parent.span_id == task.context.span_id


# ====================================================================== metrics
def _points(name: str) -> list:
    data = _READER.get_metrics_data()
    found = []
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


def test_runs_attempts_and_durations_are_counted(runner, wf_name):
    name = wf_name()
    _failing_workflow(name)
    runner.execute(name, Context())
    runs = [p for p in _points("cloaca.runs") if p.attributes.get("workflow") == name]
    assert [(p.attributes["status"], p.value) for p in runs] == [("Failed", 1)]
    attempts = {
        (p.attributes["task"], p.attributes["status"]): p.value
        for p in _points("cloaca.task.attempts") if p.attributes.get("workflow") == name
    }
    assert attempts == {("prepare", "Completed"): 1, ("explode", "Failed"): 2}
    durations = [p for p in _points("cloaca.task.duration") if p.attributes.get("workflow") == name]
    assert sum(p.count for p in durations) == 3


# ====================================================================== resumed after a crash
CRASHING_CHILD = """
import sys, time
import cloaca
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

trace.set_tracer_provider(TracerProvider())
with cloaca.WorkflowBuilder(sys.argv[2]):
    @cloaca.task(id="first")
    def first(context):
        print("running", flush=True)
        time.sleep(60)
        return context

runner = cloaca.DefaultRunner.with_config(sys.argv[1], cloaca.DefaultRunnerConfig(lease_seconds=1.0))
with trace.get_tracer("child").start_as_current_span("caller") as span:
    print(format(span.get_span_context().trace_id, "032x"), flush=True)
    runner.execute(sys.argv[2], cloaca.Context())
"""


def test_a_run_resumed_by_another_process_continues_its_trace(tmp_path, wf_name, spans):
    import os
    import signal
    import subprocess
    import sys

    name = wf_name()
    db = f"sqlite:///{tmp_path}/resumed.db"
    script = tmp_path / "crashing_child.py"
    script.write_text(CRASHING_CHILD)
    child = subprocess.Popen([sys.executable, str(script), db, name], stdout=subprocess.PIPE, text=True)
    try:
        trace_id = child.stdout.readline().strip()
        assert child.stdout.readline().strip() == "running"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

    with WorkflowBuilder(name):

        @cloaca.task(id="first")
        def first(context):
            return context

    config = cloaca.DefaultRunnerConfig(lease_seconds=1.0)
    with cloaca.DefaultRunner.with_config(db, config) as runner:
        [run] = runner.list_executions(workflow_name=name)
        assert runner.get_result(run["id"], timeout=30).status == "Completed"
    resumed = [s for s in spans.get_finished_spans() if s.attributes.get("cloaca.execution_id") == run["id"]]
    assert {s.name for s in resumed} == {f"cloaca.run {name}", "cloaca.task first"}
    assert {format(s.context.trace_id, "032x") for s in resumed} == {trace_id}
    [run_span] = [s for s in resumed if s.name.startswith("cloaca.run")]
    assert run_span.attributes["cloaca.resumed"] is True


@pytest.mark.asyncio
async def test_a_run_this_runner_lets_go_of_closes_its_span_here(make_runner, wf_name, spans):
    import time

    from cloaca._store.base import ExecutionRecord

    name = wf_name()
    _failing_workflow(name)
    async with make_runner() as runner:
        engine = runner._engine
        now = time.time()
        execution = ExecutionRecord(id="01a22d06-95ec-79a1-ac76-209019692fad", workflow_name=name,
                                    workflow_version="v", status="Running", input_context="{}", started_at=now)
        run = engine.new_run(execution, engine.registry.get_workflow(name))
        assert await engine.store.create_execution(
            execution, [s.record for s in run.tasks.values()], "another-runner", now + 60, None, None)
        run.span = trace.get_tracer("test").start_span("cloaca.run held here")
        engine.runs[run.id] = run  # held here; still unfinished in the store (another runner has it)
        await engine.let_go(run.id)
        assert run.id not in engine.runs
    [span] = [s for s in spans.get_finished_spans() if s.name == "cloaca.run held here"]
    assert span.attributes["cloaca.continued_elsewhere"] is True
