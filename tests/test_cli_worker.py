"""`cloaca --app MODULE worker`: fires triggers, resumes a run whose worker was killed, and
stops on SIGTERM with exit 0 — on SQLite and PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from cli_support import APP, BACKENDS, ROOT, SCRIPT, as_json, cli_env, cloaca, database_url
from support import poll_until


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_url(request.param, tmp_path)


class Workers:
    """Worker processes started by a test; any still alive at its end are killed."""

    def __init__(self, db: str, directory: Path) -> None:
        self.db = db
        self.directory = directory
        self.started: list[subprocess.Popen[str]] = []

    def start(self, name: str, *options: str) -> subprocess.Popen[str]:
        log = self.directory / f"{name}.log"
        process = subprocess.Popen(
            [str(SCRIPT), "--db", self.db, "--app", APP, "worker", "--lease-seconds", "1", *options],
            cwd=ROOT, env=cli_env(self.directory), stdout=subprocess.DEVNULL,
            stderr=log.open("w"), text=True,
        )
        self.started.append(process)
        poll_until(lambda: "serving" in log.read_text() or process.poll() is not None,
                 f"worker {name} to start", timeout=60)
        assert process.poll() is None, log.read_text()
        return process

    def log(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text()

    def kill_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def workers(db: str, tmp_path: Path) -> Iterator[Workers]:
    made = Workers(db, tmp_path)
    try:
        yield made
    finally:
        made.kill_all()


def _fired_run(db: str, trigger: str) -> Optional[str]:
    """The run the trigger fired, once it has fired."""
    fires = as_json(cloaca("--db", db, "--json", "triggers", "history", trigger))
    return fires[0]["workflow_execution_id"] if fires else None


def _ended(db: str, execution_id: str) -> Optional[dict[str, Any]]:
    run = as_json(cloaca("--db", db, "--json", "runs", "show", execution_id))
    return run if run["status"] not in ("Pending", "Running") else None


def test_worker_fires_triggers_resumes_a_killed_workers_run_and_stops_on_sigterm(
    db: str, workers: Workers, tmp_path: Path
) -> None:
    first = workers.start("first")

    (tmp_path / "inbox").write_text("bob")
    greeted = poll_until(lambda: _fired_run(db, "inbox"), "the inbox trigger to fire", timeout=60)
    run = poll_until(lambda: _ended(db, greeted), "the fired run to end", timeout=60)
    assert (run["workflow_name"], run["status"]) == ("cli_greet", "Completed")
    assert run["final_context"]["message"] == "HELLO, BOB"

    # A run in progress in a worker killed with SIGKILL resumes in another worker.
    (tmp_path / "slow_inbox").write_text("t1")
    started = tmp_path / "slow_started"
    poll_until(started.exists, "the slow task to start in the first worker", timeout=60)
    assert started.read_text().split() == [str(first.pid)]
    slow = poll_until(lambda: _fired_run(db, "slow_inbox"), "the slow_inbox fire to be recorded", timeout=60)
    first.kill()
    first.wait()
    second = workers.start("second")
    (tmp_path / "release").touch()
    run = poll_until(lambda: _ended(db, slow), "the interrupted run to end in the second worker", timeout=60)
    assert run["status"] == "Completed"
    assert run["final_context"]["released_in"] == second.pid
    assert started.read_text().split() == [str(first.pid), str(second.pid)]

    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0, workers.log("second")
    log = workers.log("second")
    assert "shutting down" in log and "stopped" in log
    assert "Traceback" not in log


def test_workers_on_postgresql_share_the_tasks_of_a_run(db: str, workers: Workers, tmp_path: Path) -> None:
    if not db.startswith("postgresql"):
        pytest.skip("SQLite shares work by run, not by task")
    # One task slot each: the four parallel parts cannot all run in one worker.
    pids = {workers.start(name, "--max-concurrent-tasks", "1").pid for name in ("first", "second")}
    (tmp_path / "fan_inbox").write_text("b1")
    fanned = poll_until(lambda: _fired_run(db, "fan_inbox"), "the fan_inbox trigger to fire", timeout=60)
    run = poll_until(lambda: _ended(db, fanned), "the fanned-out run to end", timeout=60)
    assert run["status"] == "Completed"
    assert {run["final_context"][f"pid_{i}"] for i in range(4)} == pids


def test_a_run_retried_without_its_app_is_carried_on_by_a_worker(db: str, workers: Workers, tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    execution_id = cloaca("--db", db, "--app", APP, "runs", "start", "cli_slow", env=env).stdout.strip()
    assert as_json(cloaca("--db", db, "--json", "runs", "cancel", execution_id))["status"] == "Cancelled"

    # No --app: this command does not have the workflow; the run waits for a worker that has it.
    retried = cloaca("--db", db, "runs", "retry", execution_id)
    assert (retried.returncode, retried.stdout.strip()) == (0, execution_id), retried.stderr
    assert f"Run {execution_id} reopened: it waits for a worker that has workflow 'cli_slow'" in retried.stderr
    assert as_json(cloaca("--db", db, "--json", "runs", "show", execution_id))["status"] == "Pending"

    (tmp_path / "release").touch()
    worker = workers.start("worker")
    run = poll_until(lambda: _ended(db, execution_id), "the retried run to end in the worker", timeout=60)
    assert run["status"] == "Completed"
    assert run["final_context"]["released_in"] == worker.pid
