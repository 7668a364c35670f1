"""Run control across processes (SPEC A9): a run executing in a child process is cancelled
from this one and stops there within a lease period; retried from here, it resumes and
completes — on a SQLite file (work shared by run) and on PostgreSQL (work shared by task)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from support import drop_postgres_schema_later

import cloaca
from cloaca import DefaultRunner, DefaultRunnerConfig

POSTGRES_URL = os.environ.get("CLOACA_TEST_POSTGRES_URL")
WORKFLOW = "rc_cross_process_wf"
LEASE = 1.0

CHILD = textwrap.dedent(
    """
    import os, sys, time
    import cloaca

    url, schema, gate = sys.argv[1], sys.argv[2] or None, sys.argv[3]
    with cloaca.WorkflowBuilder("rc_cross_process_wf"):
        @cloaca.task(id="first")
        def first(context):
            context.set("first", True)
            return context

        @cloaca.task(id="gated", dependencies=["first"])
        def gated(context):
            print("gated running", flush=True)
            while not os.path.exists(gate):
                time.sleep(0.02)
            context.set("gated", True)
            return context

        @cloaca.task(id="last", dependencies=["gated"])
        def last(context):
            context.set("last", True)
            return context

    config = cloaca.DefaultRunnerConfig(lease_seconds=1.0, enable_cron_scheduling=False)
    runner = cloaca.DefaultRunner(url, _config=config, _schema=schema)
    result = runner.execute("rc_cross_process_wf", cloaca.Context())
    print("child result", result.status, flush=True)
    runner.shutdown()
    """
)


def _define_here() -> None:
    with cloaca.WorkflowBuilder(WORKFLOW):

        @cloaca.task(id="first")
        def first(context):
            context.set("first", True)
            return context

        @cloaca.task(id="gated", dependencies=["first"])
        def gated(context):
            context.set("gated", "retried here")
            return context

        @cloaca.task(id="last", dependencies=["gated"])
        def last(context):
            context.set("last", True)
            return context


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(url, schema) of a database shared by this process and the child."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/shared.db", ""
        return
    if not POSTGRES_URL:
        pytest.skip("CLOACA_TEST_POSTGRES_URL is not set")
    schema = f"cloaca_rc_{uuid.uuid4().hex[:10]}"
    yield POSTGRES_URL, schema
    drop_postgres_schema_later(POSTGRES_URL, schema)


def test_cancel_and_retry_a_run_executing_in_another_process(database, tmp_path):
    url, schema = database
    gate = tmp_path / "gate"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script), url, schema, str(gate)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "gated running"
        _define_here()
        config = DefaultRunnerConfig(lease_seconds=LEASE, enable_cron_scheduling=False,
                                     enable_recovery=False)
        with DefaultRunner(url, _config=config, _schema=schema or None) as runner:
            [run] = runner.list_executions(workflow_name=WORKFLOW)
            cancelled_at = time.monotonic()
            assert runner.cancel(run["id"]) is True
            # The child's execute returns "Cancelled" within about a lease period.
            out, err = child.communicate(timeout=30)
            noticed = time.monotonic() - cancelled_at
            assert "child result Cancelled" in out, err
            assert noticed < 10 * LEASE  # a hang guard: the notice comes within a renewal
            tasks = {t["task_name"]: t for t in runner.get_execution(run["id"]).task_results}
            assert (tasks["first"]["status"], tasks["gated"]["status"], tasks["last"]["status"]) == (
                "Completed", "Cancelled", "Cancelled")
            assert tasks["last"]["attempt_count"] == 0

            gate.touch()  # (the child is gone: its abandoned body can finish nothing)
            assert runner.retry_execution(run["id"]) == run["id"]
            result = runner.get_result(run["id"], timeout=30)
            assert result.status == "Completed"
            assert result.final_context.to_dict() == {"first": True, "gated": "retried here", "last": True}
            tasks = {t["task_name"]: t for t in result.task_results}
            assert tasks["first"]["attempt_count"] == 1  # not run again
            assert tasks["gated"]["attempt_count"] == 2
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
