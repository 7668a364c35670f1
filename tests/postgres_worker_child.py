"""A runner process of tests/test_postgres_multiprocess.py (not a test module itself).

    python postgres_worker_child.py URL SCHEMA LOG_PATH PREFIX RUNS EXPECTED_TOTAL

Starts a runner (lease 1 s) on PostgreSQL schema SCHEMA, executes RUNS runs of a five-task
workflow (context key `run_key` = PREFIX-rN), then keeps running (taking over the tasks of
dead runners) until EXPECTED_TOTAL runs of the workflow exist and all have ended. Every
task body appends "run_key:task@PREFIX" to LOG_PATH once its work is done. Exits 0 when every run
completed, 1 if one did not complete, 2 on timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import cloaca
from cloaca import Context, DefaultRunner, DefaultRunnerConfig

WORKFLOW = "pg_multiprocess_fanout_wf"
TASK_SECONDS = 0.25
WAIT_SECONDS = 60.0

LOG_FD: int = -1
PREFIX = ""


def _log(context: Context, task_name: str) -> None:
    os.write(LOG_FD, f"{context.get('run_key')}:{task_name}@{PREFIX}\n".encode())  # O_APPEND: atomic


def _make_task(task_name: str, dependencies: list[str]) -> None:
    @cloaca.task(id=task_name, dependencies=dependencies)
    async def body(context: Context) -> Context:
        await asyncio.sleep(TASK_SECONDS)
        _log(context, task_name)
        context.set(f"done_{task_name}", True)
        return context


# t1 fans out to t2, t3, t4, which join in t5.
with cloaca.WorkflowBuilder(WORKFLOW):
    _make_task("t1", [])
    for _name in ("t2", "t3", "t4"):
        _make_task(_name, ["t1"])
    _make_task("t5", ["t2", "t3", "t4"])


async def main(url: str, schema: str, prefix: str, runs: int, expected_total: int) -> int:
    config = DefaultRunnerConfig(lease_seconds=1.0, enable_cron_scheduling=False, max_concurrent_tasks=8)
    async with DefaultRunner(url, _config=config, _schema=schema) as runner:
        results = await asyncio.gather(*(
            runner.aexecute(WORKFLOW, Context({"run_key": f"{prefix}-r{i}"})) for i in range(runs)
        ))
        assert all(r.status == "Completed" for r in results), [r.status for r in results]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while loop.time() < deadline:
            listed = await runner.alist_executions(workflow_name=WORKFLOW, limit=1000)
            if len(listed) >= expected_total and all(r["status"] not in ("Pending", "Running") for r in listed):
                print(json.dumps({"prefix": prefix, "seen": len(listed)}), flush=True)
                return 0 if all(r["status"] == "Completed" for r in listed) else 1
            await asyncio.sleep(0.1)
    return 2


if __name__ == "__main__":
    _url, _schema, _log_path, _prefix, _runs, _expected = sys.argv[1:7]
    PREFIX = _prefix
    LOG_FD = os.open(_log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sys.exit(asyncio.run(main(_url, _schema, _prefix, int(_runs), int(_expected))))
