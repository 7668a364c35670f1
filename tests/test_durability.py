"""Durable runs (SPEC A4): a runner process is SIGKILLed mid-run; a runner started on the
same SQLite file finishes the run without running completed tasks again (at-least-once for
the interrupted one), taking it over once the dead owner's lease has expired."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from cloaca import DefaultRunner, DefaultRunnerConfig

from support import poll_until, sigkill_when

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

CHILD = Path(__file__).with_name("durability_child.py")
_spec = importlib.util.spec_from_file_location("cloaca_durability_child", CHILD)
child_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(child_module)  # type: ignore[union-attr]
TASKS: list[str] = child_module.TASKS


def read_log(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def start_child(tmp_path: Path, db_url: str, log: Path, name: str, lease: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(CHILD), db_url, str(log), name, str(lease)],
        stdout=open(tmp_path / "child.out", "wb"),
        stderr=subprocess.STDOUT,
        cwd=str(tmp_path),
    )


def kill_after(child: subprocess.Popen, log: Path, tmp_path: Path, lines: int) -> list[str]:
    """SIGKILL the child once `lines` task calls are logged; the log as it was at the kill."""
    sigkill_when(child, lambda: len(read_log(log)) >= lines, f"{lines} tasks logged by the child",
                 tmp_path / "child.out")
    return read_log(log)


def check_resumed_log(before_kill: list[str], final: list[str]) -> None:
    """Completed tasks ran once; the interrupted one at most twice; every task ran."""
    counts = Counter(final)
    assert set(counts) == set(TASKS), final
    assert final[: len(before_kill)] == before_kill
    assert before_kill == TASKS[: len(before_kill)]
    interrupted = before_kill[-1]
    for task_id in TASKS:
        allowed = {1, 2} if task_id == interrupted else {1}
        assert counts[task_id] in allowed, f"{task_id} ran {counts[task_id]} times: {final}"
    # resumed in order, from the interrupted task (or the one after it) on
    resumed = final[len(before_kill):]
    assert resumed == sorted(resumed, key=TASKS.index)


def wait_until_completed(runner: DefaultRunner, name: str, timeout: float = 20.0):
    def completed():
        runs = runner.list_executions(workflow_name=name)
        return runs if runs and runs[0]["status"] not in ("Pending", "Running") else None

    runs = poll_until(completed, f"run of {name} to finish after the takeover", timeout)
    assert len(runs) == 1
    return runner.get_execution(runs[0]["id"])


def check_result(result) -> None:
    assert result.status == "Completed", result.error_message
    final = result.final_context.to_dict()
    assert final == {"started_by": "child", **{task_id: True for task_id in TASKS}}
    assert {r["task_name"].rsplit("::", 1)[-1]: r["status"] for r in result.task_results} == {
        task_id: "Completed" for task_id in TASKS
    }


def test_a_killed_run_resumes_in_a_new_runner(tmp_path, db_url, wf_name):
    name = wf_name()
    log = tmp_path / "calls.log"
    child = start_child(tmp_path, db_url, log, name, lease=1.0)
    before_kill = kill_after(child, log, tmp_path, lines=3)

    child_module.define_chain(name, str(log))  # same name, same task ids, in this process
    with DefaultRunner.with_config(db_url, DefaultRunnerConfig(lease_seconds=1.0)) as runner:
        result = wait_until_completed(runner, name)
    check_result(result)
    check_resumed_log(before_kill, read_log(log))


def test_a_fresh_lease_is_respected_then_taken_over_when_it_expires(tmp_path, db_url, wf_name):
    lease = 4.5  # renewed every 1.5 s: fresh for at least ~3 s after the kill
    fresh_window = 1.5  # only observations this soon after the kill are checked
    name = wf_name()
    log = tmp_path / "calls.log"
    child = start_child(tmp_path, db_url, log, name, lease=lease)
    before_kill = kill_after(child, log, tmp_path, lines=2)
    killed_at = time.monotonic()

    child_module.define_chain(name, str(log))
    with DefaultRunner.with_config(db_url, DefaultRunnerConfig(lease_seconds=1.0)) as runner:
        observations = []
        while time.monotonic() < killed_at + fresh_window:
            status = runner.list_executions(workflow_name=name)[0]["status"]
            lines = read_log(log)
            if time.monotonic() < killed_at + fresh_window:
                observations.append((status, lines))
            time.sleep(0.05)
        assert observations, "the new runner took too long to start to check the fresh lease"
        for status, lines in observations:  # the dead owner's lease still held: hands off
            assert status == "Running"
            assert lines == before_kill
        result = wait_until_completed(runner, name, timeout=lease + 20)
    check_result(result)
    check_resumed_log(before_kill, read_log(log))
