"""Child process of tests/test_durability.py: runs a 6-task chain until it is SIGKILLed.

    python durability_child.py DB_URL LOG_PATH WORKFLOW_NAME LEASE_SECONDS

Each task appends its name to LOG_PATH (one line per call), then sleeps 0.3 s. The parent
kills this process mid-run and finishes the run in a runner of its own; it imports
`define_chain` from this file so that both define the very same workflow.
"""

from __future__ import annotations

import os
import sys
import time

import cloaca
from cloaca import Context, DefaultRunner, DefaultRunnerConfig, WorkflowBuilder

TASKS = [f"step_{i}" for i in range(1, 7)]
TASK_SECONDS = 0.3


def append_line(path: str, line: str) -> None:
    """One write() of a whole line, so a kill never leaves half a line behind."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def define_chain(name: str, log_path: str) -> None:
    """step_1 -> step_2 -> ... -> step_6; each records its call and marks the context."""
    with WorkflowBuilder(name):
        previous = None
        for task_id in TASKS:

            def make(task_id: str):
                def body(context):
                    append_line(log_path, task_id)
                    time.sleep(TASK_SECONDS)
                    context.set(task_id, True)
                    return context

                return body

            cloaca.task(id=task_id, dependencies=[previous] if previous else [])(make(task_id))
            previous = task_id


def main() -> None:
    db_url, log_path, name, lease = sys.argv[1:5]
    define_chain(name, log_path)
    runner = DefaultRunner.with_config(db_url, DefaultRunnerConfig(lease_seconds=float(lease)))
    result = runner.execute(name, Context({"started_by": "child"}))
    print(f"child finished without being killed: {result!r}", flush=True)


if __name__ == "__main__":
    main()
