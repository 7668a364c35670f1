"""`cloaca runs ...`, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from cli_support import (APP, BACKENDS, ROOT, SCRIPT, as_json, cli_env, cloaca, cloaca_process, database_url,
                         ok, one_line_error)

RESULT_KEYS = {"execution_id", "workflow_name", "status", "start_time", "end_time",
               "duration_seconds", "error_message", "final_context", "task_results"}
TASK_KEYS = {"task_name", "task_namespace", "status", "start_time", "end_time", "attempt_count",
             "error_message", "traceback"}
LIST_KEYS = {"id", "workflow_name", "status", "started_at", "completed_at", "error_message"}


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_url(request.param, tmp_path)


def start(db: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return cloaca("--db", db, "--app", APP, *args, env=env)


def test_start_wait_show_and_list(db: str) -> None:
    greeted = as_json(start(db, "--json", "runs", "start", "cli_greet", "--context", '{"name": "ada"}',
                            "--wait"))
    assert set(greeted) == RESULT_KEYS
    assert (greeted["workflow_name"], greeted["status"], greeted["error_message"]) == ("cli_greet", "Completed", None)
    assert greeted["final_context"] == {"name": "ada", "message": "HELLO, ADA"}
    assert [t["task_name"] for t in greeted["task_results"]] == ["hello", "shout"]
    assert all(set(t) == TASK_KEYS for t in greeted["task_results"])
    assert greeted["duration_seconds"] >= 0

    failed = start(db, "runs", "start", "cli_fails", "--wait")
    assert failed.returncode == 1, failed.stderr
    assert "Failed" in failed.stdout and "the disk is full" in failed.stdout

    shown = as_json(cloaca("--db", db, "--json", "runs", "show", greeted["execution_id"]))
    assert shown == greeted
    runs = as_json(cloaca("--db", db, "--json", "runs", "list"))
    assert all(set(r) == LIST_KEYS for r in runs)
    assert [r["workflow_name"] for r in runs] == ["cli_fails", "cli_greet"]  # newest first
    fails_id = runs[0]["id"]

    tasks = {t["task_name"]: t for t in as_json(cloaca("--db", db, "--json", "runs", "show", fails_id))["task_results"]}
    assert tasks["prepare"]["status"] == "Completed" and tasks["prepare"]["traceback"] is None
    assert tasks["explode"]["status"] == "Failed"
    assert "RuntimeError: the disk is full" in tasks["explode"]["traceback"]

    # Tracebacks are shown in full by `show` only.
    human = ok(cloaca("--db", db, "runs", "show", fails_id)).stdout
    assert "Traceback (most recent call last)" in human and 'raise RuntimeError("the disk is full")' in human
    assert "Final context:" in human and '"prepared": true' in human
    listing = ok(cloaca("--db", db, "runs", "list")).stdout
    assert "Traceback" not in listing
    header, *rows = listing.splitlines()
    assert header.split() == ["ID", "WORKFLOW", "STATUS", "STARTED", "DURATION", "ERROR"]
    assert [row.split()[:3] for row in rows] == [[fails_id, "cli_fails", "Failed"],
                                                 [greeted["execution_id"], "cli_greet", "Completed"]]

    only = as_json(cloaca("--db", db, "--json", "runs", "list", "--workflow", "cli_greet"))
    assert [r["id"] for r in only] == [greeted["execution_id"]]
    only = as_json(cloaca("--db", db, "--json", "runs", "list", "--status", "Failed", "--limit", "5"))
    assert [r["id"] for r in only] == [fails_id]
    assert len(as_json(cloaca("--db", db, "--json", "runs", "list", "--limit", "1"))) == 1
    one_line_error(cloaca("--db", db, "runs", "list", "--status", "Bogus"), 2, "Bogus", "Completed")


def test_start_cancel_and_retry(db: str, tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    # Without --wait the id is printed at once; no worker runs, so the run stays in flight.
    execution_id = ok(start(db, "runs", "start", "cli_slow", env=env)).stdout.strip()
    assert as_json(cloaca("--db", db, "--json", "runs", "show", execution_id))["status"] == "Running"

    waited = start(db, "runs", "start", "cli_slow", "--wait", "--timeout", "0.2", env=env)
    one_line_error(waited, 1, "did not end within 0.2s")

    cancelled = as_json(cloaca("--db", db, "--json", "runs", "cancel", execution_id))
    assert cancelled == {"execution_id": execution_id, "cancelled": True, "status": "Cancelled"}
    again = ok(cloaca("--db", db, "runs", "cancel", execution_id)).stdout
    assert "already ended (Cancelled)" in again

    (tmp_path / "release").touch()
    retried = as_json(start(db, "--json", "runs", "retry", execution_id, "--wait", env=env))
    assert (retried["execution_id"], retried["status"]) == (execution_id, "Completed")
    one_line_error(start(db, "runs", "retry", execution_id), 1, execution_id)

    one_line_error(start(db, "runs", "start", "no_such_workflow"), 1, "no_such_workflow")


def test_json_output_stays_one_document_when_tasks_print(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/db.db"
    # Through the console script: what a task prints must not reach the process's real stdout.
    result = cloaca_process("--db", db, "--app", APP, "--json", "runs", "start", "cli_greet",
                            "--context", '{"name": "eve"}', "--wait")
    assert json.loads(ok(result).stdout)["status"] == "Completed"
    assert "greeting eve" in result.stderr  # what the task printed went to stderr


def _in_terminal(*args: str, **env: str) -> str:
    """The output of `cloaca ARGS` run with a terminal as its stdout."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([str(SCRIPT), *args], cwd=ROOT, env=cli_env(**env), stdout=follower,
                               stderr=subprocess.PIPE)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=60) == 0
    return b"".join(chunks).decode()


def test_statuses_are_coloured_on_a_terminal_only_without_no_color(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/db.db"
    ok(start(db, "runs", "start", "cli_greet", "--wait"))
    assert "\x1b[32mCompleted" in _in_terminal("--db", db, "runs", "list")
    assert "\x1b[" not in _in_terminal("--db", db, "runs", "list", NO_COLOR="1")
    piped = ok(cloaca_process("--db", db, "runs", "list")).stdout
    assert "\x1b[" not in piped and "Completed" in piped
