"""Ctrl-C during a blocking `execute` (SPEC A9/issue 11): the first one shuts the runner down
gracefully and says so; a second one stops at once with one line; what did not finish is
resumed by the next runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support import poll_until

import cloaca
from cloaca import DefaultRunner

pytestmark = pytest.mark.skipif(os.name != "posix", reason="sends SIGINT")

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import cloaca

    with cloaca.WorkflowBuilder("interrupted_wf"):
        @cloaca.task(id="slow")
        def slow(context):
            print("started", flush=True)
            time.sleep(float(sys.argv[2]))
            context.set("slow", True)
            return context

    # A 1 s lease (5 s by default): the run a Ctrl-C stopped at once is taken over that soon.
    runner = cloaca.DefaultRunner.with_config(
        sys.argv[1], cloaca.DefaultRunnerConfig(shutdown_grace_seconds=30.0, lease_seconds=1.0))
    runner.execute("interrupted_wf", cloaca.Context())
    print("execute returned", flush=True)
    """
)


def _start(tmp_path: Path, db: str, sleep: float) -> subprocess.Popen[str]:
    script = tmp_path / "interrupted.py"
    script.write_text(SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script), db, str(sleep)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "started"
    return process


def test_a_second_ctrl_c_stops_at_once_with_one_line_and_the_run_resumes_later(tmp_path, wf_name):
    db = f"sqlite:///{tmp_path}/interrupted.db"
    process = _start(tmp_path, db, sleep=60)
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)  # the graceful shutdown is waiting for the 60 s task
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [
        "cloaca: interrupted; running tasks get 30s (shutdown_grace_seconds) to finish; "
        "press Ctrl-C again to stop at once",
        "cloaca: stopped at once; unfinished runs resume when a runner next starts on this database",
    ]

    # The next runner resumes the run (its lease expires, the task runs again).
    with cloaca.WorkflowBuilder("interrupted_wf"):

        @cloaca.task(id="slow")
        def slow(context):
            context.set("slow", True)
            return context

    config = cloaca.DefaultRunnerConfig(lease_seconds=1.0)
    with DefaultRunner.with_config(db, config) as runner:
        [run] = runner.list_executions(workflow_name="interrupted_wf")
        result = runner.get_result(run["id"], timeout=30)
        assert result.status == "Completed"
        assert result.final_context.get("slow") is True


def test_one_ctrl_c_lets_the_running_task_finish_then_interrupts(tmp_path):
    db = f"sqlite:///{tmp_path}/graceful.db"
    process = _start(tmp_path, db, sleep=1.0)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode != 0  # KeyboardInterrupt propagates once the runner is down
    assert "execute returned" not in out
    assert "running tasks get 30s (shutdown_grace_seconds) to finish" in err
    assert "During handling of the above exception" not in err
    with DefaultRunner(db) as runner:
        [run] = runner.list_executions(workflow_name="interrupted_wf")
        # the running task had its grace period and finished
        poll_until(lambda: runner.get_execution(run["id"]).task_results[0]["status"] == "Completed",
                   "the task to have completed during the grace period", 10)
