"""A runner process of tests/chaos/test_chaos_kills.py (not a test module itself).

    python chaos_worker.py DB_URL LOG_PATH SUBMITTED_PATH SLOT RUNS LEASE_SECONDS SUBMIT_PAUSE

Starts a runner on DB_URL, submits this slot's RUNS runs of a five-task fan-out workflow
that a previous process of the same slot had not acknowledged (SUBMITTED_PATH holds one
line "SLOT INDEX EXECUTION_ID" per acknowledged submission), SUBMIT_PAUSE seconds apart
so that they arrive over time, then serves until it is killed: it executes its own runs and takes over the work of dead processes.

Every task body first appends one line "PID RUN_KEY TASK" to LOG_PATH (its side effect, one
line per execution, written by a single O_APPEND write), then sleeps a short while. The
run key is "sSLOT-INDEX-PID", so a run submitted again after a kill has a key of its own.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys

import cloaca
from cloaca import Context, DefaultRunner, DefaultRunnerConfig

WORKFLOW = "chaos_fanout"
TASKS = ("t1", "t2", "t3", "t4", "t5")
MAX_CONCURRENT_TASKS = 4

LOG_FD = -1
PARENT = os.getppid()


def _make_task(task_name: str, dependencies: list[str]) -> None:
    @cloaca.task(id=task_name, dependencies=dependencies)
    async def body(context: Context) -> Context:
        os.write(LOG_FD, f"{os.getpid()} {context.get('run_key')} {task_name}\n".encode())
        await asyncio.sleep(random.uniform(0.02, 0.12))
        context.set(f"done_{task_name}", True)
        return context


# t1 fans out to t2, t3, t4, which join in t5.
with cloaca.WorkflowBuilder(WORKFLOW):
    _make_task("t1", [])
    for _name in ("t2", "t3", "t4"):
        _make_task(_name, ["t1"])
    _make_task("t5", ["t2", "t3", "t4"])


def _acknowledged(path: str, slot: int) -> set[int]:
    try:
        with open(path) as f:
            rows = [line.split() for line in f if line.endswith("\n")]
    except FileNotFoundError:
        return set()
    return {int(r[1]) for r in rows if len(r) == 3 and int(r[0]) == slot}


async def main(url: str, submitted_path: str, slot: int, runs: int, lease: float, pause: float) -> None:
    config = DefaultRunnerConfig(
        lease_seconds=lease, enable_cron_scheduling=False, max_concurrent_tasks=MAX_CONCURRENT_TASKS,
        max_concurrent_async_tasks=MAX_CONCURRENT_TASKS,
    )
    done = _acknowledged(submitted_path, slot)
    ack = os.open(submitted_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    async with DefaultRunner(url, _config=config) as runner:
        print(f"ready {os.getpid()}", flush=True)
        for index in range(runs):
            if index in done:
                continue
            execution_id = await runner.asubmit(
                WORKFLOW, Context({"run_key": f"s{slot}-{index}-{os.getpid()}"})
            )
            os.write(ack, f"{slot} {index} {execution_id}\n".encode())
            await asyncio.sleep(pause)
        print(f"submitted {os.getpid()}", flush=True)
        while os.getppid() == PARENT:  # serve until killed, or until the test itself is gone
            await asyncio.sleep(0.5)


if __name__ == "__main__":
    _url, _log, _submitted, _slot, _runs, _lease, _pause = sys.argv[1:8]
    LOG_FD = os.open(_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    asyncio.run(main(_url, _submitted, int(_slot), int(_runs), float(_lease), float(_pause)))
