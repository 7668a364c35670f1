"""`retry_execution` in a process whose registry lacks the run's workflow (a CLI, a dashboard):
the run is reopened "Pending" and a runner that has the workflow — already running, or
started afterwards — carries it on; its completed tasks are not run again. And a retry by a
process that has the workflow but dies before going on with the run: another runner carries
it on. On a SQLite file shared by run, on one shared by task, and on PostgreSQL.

This process never declares the workflow (it stands for the process without it); child
processes do.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from support import drop_postgres_schema_later

from cloaca import DefaultRunner, DefaultRunnerConfig

POSTGRES_URL = os.environ.get("CLOACA_TEST_POSTGRES_URL")
WORKFLOW = "retried_elsewhere_wf"

# argv: url, schema ('' for none), directory, mode[, execution id]. Mode "fail": execute a
# run (it fails while <dir>/healed does not exist), print its id, exit. Mode "serve": run
# until <dir>/stop exists. Mode "retry-dies": retry the run and die (SIGKILL) as soon as the
# store has reopened it, before anything else is written. Each run of task `first` appends a
# line to <dir>/first_runs.
CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    import cloaca

    url, schema, where, mode = sys.argv[1], sys.argv[2] or None, Path(sys.argv[3]), sys.argv[4]
    if mode == "retry-dies":
        if url.startswith("postgres"):
            from cloaca._store.postgres import PostgresStore as Store
        else:
            from cloaca._store.sqlite import SQLiteStore as Store
        reopen = Store.reset_for_retry

        async def reopen_then_die(self, *args, **kwargs):
            await reopen(self, *args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)

        Store.reset_for_retry = reopen_then_die
    with cloaca.WorkflowBuilder("retried_elsewhere_wf"):
        @cloaca.task(id="first")
        def first(context):
            with open(where / "first_runs", "a") as runs:
                runs.write(f"{os.getpid()}\\n")
            context.set("first", True)
            return context

        @cloaca.task(id="flaky", dependencies=["first"], retry_attempts=0)
        def flaky(context):
            if not (where / "healed").exists():
                raise RuntimeError("not healed yet")
            context.set("flaky", os.getpid())
            return context

        @cloaca.task(id="last", dependencies=["flaky"],
                     trigger_rules=cloaca.all_of(cloaca.task_success("flaky")))
        def last(context):
            context.set("last", True)
            return context

    config = cloaca.DefaultRunnerConfig(lease_seconds=1.0, enable_cron_scheduling=False)
    runner = cloaca.DefaultRunner(url, _config=config, _schema=schema)
    if mode == "fail":
        result = runner.execute("retried_elsewhere_wf", cloaca.Context())
        print(result.status, result.execution_id, flush=True)
    elif mode == "retry-dies":
        runner.retry_execution(sys.argv[5])
    else:
        print("serving", flush=True)
        while not (where / "stop").exists():
            time.sleep(0.05)
    runner.shutdown()
    """
)


@pytest.fixture(params=["sqlite", "sqlite-by-task", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(url, schema) of a database shared by this process and the children."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/shared.db", ""
        return
    if request.param == "sqlite-by-task":
        yield f"sqlite:///{tmp_path}/shared.db?sharing=task", ""
        return
    if not POSTGRES_URL:
        pytest.skip("CLOACA_TEST_POSTGRES_URL is not set")
    schema = f"cloaca_retry_{uuid.uuid4().hex[:10]}"
    yield POSTGRES_URL, schema
    drop_postgres_schema_later(POSTGRES_URL, schema)


class Children:
    """The child processes of a test, stopped (or killed) at its end."""

    def __init__(self, url: str, schema: str, where: Path) -> None:
        self.args = [sys.executable, str(where / "child.py"), url, schema, str(where)]
        (where / "child.py").write_text(CHILD)
        self.where = where
        self.serving: list[subprocess.Popen[str]] = []

    def failed_run(self) -> str:
        """The id of a run of the workflow that failed in a child, now gone."""
        done = subprocess.run(self.args + ["fail"], capture_output=True, text=True, timeout=60)
        status, execution_id = done.stdout.split()
        assert (done.returncode, status) == (0, "Failed"), done.stderr
        return execution_id

    def retry_and_die(self, execution_id: str) -> None:
        """Retry the run in a child that has its workflow, killed right after the reopen."""
        done = subprocess.run(self.args + ["retry-dies", execution_id], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == -signal.SIGKILL, done.stderr

    def serve(self) -> subprocess.Popen[str]:
        child = subprocess.Popen(self.args + ["serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        self.serving.append(child)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "serving", child.stderr
        return child

    def stop(self) -> None:
        (self.where / "stop").touch()
        for child in self.serving:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@pytest.fixture
def children(database: tuple[str, str], tmp_path: Path) -> Iterator[Children]:
    made = Children(*database, tmp_path)
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
def here(database: tuple[str, str]) -> Iterator[DefaultRunner]:
    """A runner of this process, which does not have the workflow (nor resumes anything)."""
    url, schema = database
    config = DefaultRunnerConfig(lease_seconds=1.0, enable_cron_scheduling=False, enable_recovery=False)
    with DefaultRunner(url, _config=config, _schema=schema or None) as runner:
        yield runner


def _carried_on(runner: DefaultRunner, execution_id: str, where: Path, server: subprocess.Popen[str]) -> None:
    """The retried run completed in `server`, its completed task not run again."""
    result = runner.get_result(execution_id, timeout=60)
    assert result.status == "Completed", result.error_message
    assert result.final_context.to_dict() == {"first": True, "flaky": server.pid, "last": True}
    tasks = {t["task_name"]: t for t in result.task_results}
    assert (tasks["first"]["attempt_count"], tasks["flaky"]["attempt_count"]) == (1, 2)
    assert len((where / "first_runs").read_text().split()) == 1


def test_a_runner_started_afterwards_carries_on_the_retried_run(
    here: DefaultRunner, children: Children, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    execution_id = children.failed_run()
    (tmp_path / "healed").touch()
    with caplog.at_level(logging.INFO, logger="cloaca"):
        assert here.retry_execution(execution_id) == execution_id
    assert any(execution_id in r.getMessage() and "waits" in r.getMessage()
               and WORKFLOW in r.getMessage() for r in caplog.records)
    # Nobody has the workflow yet: the run waits, reopened, its failed tasks NotStarted.
    waiting = here.get_execution(execution_id)
    assert waiting is not None and waiting.status == "Pending"
    assert {t["task_name"]: t["status"] for t in waiting.task_results} == {
        "first": "Completed", "flaky": "NotStarted", "last": "NotStarted"}
    assert [r["status"] for r in here.list_executions(workflow_name=WORKFLOW)] == ["Pending"]

    server = children.serve()
    _carried_on(here, execution_id, tmp_path, server)


def test_a_runner_already_running_carries_on_the_retried_run(
    here: DefaultRunner, children: Children, tmp_path: Path,
) -> None:
    server = children.serve()
    execution_id = children.failed_run()
    (tmp_path / "healed").touch()
    assert here.retry_execution(execution_id) == execution_id
    _carried_on(here, execution_id, tmp_path, server)


def test_a_pending_run_can_be_cancelled_and_not_retried_again(
    here: DefaultRunner, children: Children, tmp_path: Path,
) -> None:
    execution_id = children.failed_run()
    assert here.retry_execution(execution_id) == execution_id
    with pytest.raises(ValueError, match="it is Pending"):
        here.retry_execution(execution_id)
    assert here.cancel(execution_id) is True
    cancelled = here.get_execution(execution_id)
    assert cancelled is not None and cancelled.status == "Cancelled"
    # A runner with the workflow, started afterwards (its start takes over what waits),
    # leaves the cancelled run alone.
    children.serve()
    assert here.get_result(execution_id, timeout=5).status == "Cancelled"
    assert len((tmp_path / "first_runs").read_text().split()) == 1


def test_a_run_whose_retrier_died_before_going_on_is_carried_on_by_another_runner(
    here: DefaultRunner, children: Children, tmp_path: Path,
) -> None:
    execution_id = children.failed_run()
    (tmp_path / "healed").touch()
    server = children.serve()
    children.retry_and_die(execution_id)
    reopened = here.get_execution(execution_id)
    assert reopened is not None and reopened.status in ("Pending", "Running", "Completed")
    _carried_on(here, execution_id, tmp_path, server)
