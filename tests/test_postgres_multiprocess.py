"""Several runner processes on one PostgreSQL schema; one is SIGKILLed mid-run (SPEC A4).

Three processes (tests/postgres_worker_child.py) each execute runs of a five-task fan-out
workflow. Once the victim's runs are all in the database and one of its tasks has done its
work, the victim is killed. The survivors must take its tasks over when their lease (1 s)
expires and finish its runs: every run completes, each task has exactly one row, completed
once (finish_seq is a permutation), and every task's side effect happened at least once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

POSTGRES_URL = os.environ.get("CLOACA_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="CLOACA_TEST_POSTGRES_URL is not set")

CHILD = Path(__file__).with_name("postgres_worker_child.py")
WORKFLOW = "pg_multiprocess_fanout_wf"
TASKS = ("t1", "t2", "t3", "t4", "t5")
PROCESSES = 3
RUNS_PER_PROCESS = 4
WAIT_SECONDS = 90.0


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _sql(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _runs(schema: str) -> list[Any]:
    """Every stored run of the workflow, with its tasks (through the store under test)."""
    from cloaca._store.postgres import PostgresStore

    store = PostgresStore(POSTGRES_URL, schema=schema)
    await store.open()
    try:
        executions = await store.list_executions(WORKFLOW, None, 10_000, 0)
        return [await store.get_run(e.id) for e in executions]
    finally:
        await store.close()


def run_key(stored: Any) -> str:
    return json.loads(stored.execution.input_context)["run_key"]


@pytest.fixture
def schema():
    name = f"cloaca_mp_{uuid.uuid4().hex[:10]}"
    yield name
    run(_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))


def test_killed_runners_runs_are_taken_over_and_every_task_completes_once(schema, tmp_path):
    log = tmp_path / "side_effects.log"
    log.touch()
    total = PROCESSES * RUNS_PER_PROCESS
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILD), POSTGRES_URL, schema, str(log), f"c{i}",
             str(RUNS_PER_PROCESS), str(total)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(PROCESSES)
    ]
    victim, survivors = children[0], children[1:]
    try:
        # Kill the victim once all its runs exist and one of its tasks has done its work.
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            assert time.monotonic() < deadline, "the victim never got going"
            assert victim.poll() is None, f"the victim exited early: {victim.communicate()}"
            logged = log.read_text().splitlines()
            if any(line.endswith("@c0") for line in logged):
                stored = run(_runs(schema))
                if sum(run_key(r).startswith("c0-") for r in stored) == RUNS_PER_PROCESS:
                    break
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait()

        at_kill = run(_runs(schema))
        interrupted = {
            run_key(r) for r in at_kill
            if run_key(r).startswith("c0-") and r.execution.status not in ("Completed", "Failed")
        }
        assert interrupted, "the victim had no unfinished run when it was killed"

        for child in survivors:
            out, err = child.communicate(timeout=WAIT_SECONDS)
            assert child.returncode == 0, f"a survivor failed ({child.returncode}): {out}\n{err}"
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()

    stored = run(_runs(schema))
    keys = sorted(run_key(r) for r in stored)
    assert keys == sorted(f"c{p}-r{i}" for p in range(PROCESSES) for i in range(RUNS_PER_PROCESS))
    for r in stored:
        assert r.execution.status == "Completed", (run_key(r), r.execution)
        assert sorted(t.task_name.rsplit("::", 1)[-1] for t in r.tasks) == list(TASKS)  # a row per task
        assert all(t.status == "Completed" for t in r.tasks), (run_key(r), r.tasks)
        # Completed once each: the run's completion sequence numbers are 1..5, no repeats.
        assert sorted(t.finish_seq for t in r.tasks) == list(range(1, len(TASKS) + 1)), r.tasks
        assert all(t.attempt >= 1 for t in r.tasks)
        final = json.loads(r.execution.final_context)
        assert all(final.get(f"done_{name}") for name in TASKS), final

    # At least once per task: every task of every run left its side effect.
    lines = log.read_text().splitlines()
    effects = Counter(line.partition("@")[0] for line in lines)
    # The survivors finished the victim's interrupted runs.
    rescued = {line.partition("@")[0] for line in lines if not line.endswith("@c0")}
    assert all(any(e.startswith(f"{key}:") for e in rescued) for key in interrupted), interrupted
    expected = {f"{key}:{name}" for key in keys for name in TASKS}
    assert expected <= set(effects), sorted(expected - set(effects))
    assert set(effects) <= expected
    # Tasks of runs nobody interrupted ran exactly once.
    for key in keys:
        if key not in interrupted:
            assert all(effects[f"{key}:{name}"] == 1 for name in TASKS), key
