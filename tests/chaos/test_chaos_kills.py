"""Three runner processes on one database, SIGKILLed and restarted on a seeded random
schedule while they execute multi-task runs (README "What the runner guarantees").

Each process (chaos_worker.py) submits its share of runs of a five-task fan-out workflow,
then serves. Every task body appends "PID RUN_KEY TASK" to one log file before it works.
Right after each kill, with the victim dead and before any lease it held can expire, the
test reads the database: the victim's tasks that have a log line but are not Completed
are what it had in flight. At the end:

- nothing is lost: every acknowledged submission is stored, every stored run Completed,
  every task of every run Completed, and every task's side effect is in the log;
- only in-flight work is re-run: a task with n log lines has at least n - 1 of them from
  processes that were killed while that task was in flight;
- every run ends (the hang guard only catches a run that never does).

Figures (kills, runs, duplicates against their bound, recovery time after each kill) are
printed and, with CLOACA_CHAOS_REPORT, recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

from _chaos import HANG_GUARD_SECONDS, KILLS, POSTGRES_URL, SEED, report

pytestmark = pytest.mark.chaos

WORKER = Path(__file__).with_name("chaos_worker.py")
WORKFLOW = "chaos_fanout"
TASKS = ("t1", "t2", "t3", "t4", "t5")
PROCESSES = 3

Snapshot = tuple[dict[str, tuple[str, str]], dict[tuple[str, str], str]]
"""({execution id: (status, run key)}, {(run key, task): status})."""


# ====================================================================== reading the database
def _snapshot(executions: list[tuple[str, str, str]], tasks: list[tuple[str, str, str]]) -> Snapshot:
    runs = {i: (status, json.loads(context)["run_key"]) for i, status, context in executions}
    return runs, {(runs[e][1], t.rsplit("::", 1)[-1]): s for e, t, s in tasks if e in runs}


def sqlite_reader(path: Path) -> Callable[[], Snapshot]:
    def read() -> Snapshot:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return _snapshot(
                conn.execute("SELECT id, status, input_context FROM workflow_executions").fetchall(),
                conn.execute("SELECT execution_id, task_name, status FROM task_executions").fetchall(),
            )
        finally:
            conn.close()

    return read


def postgres_reader(url: str) -> Callable[[], Snapshot]:
    import asyncpg

    async def fetch() -> Snapshot:
        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                executions = await conn.fetch("SELECT id, status, input_context FROM workflow_executions")
                tasks = await conn.fetch("SELECT execution_id, task_name, status FROM task_executions")
        finally:
            await conn.close()
        return _snapshot([tuple(r) for r in executions], [tuple(r) for r in tasks])

    return lambda: asyncio.run(fetch())


def log_lines(path: Path) -> list[tuple[int, str, str]]:
    with open(path) as f:
        return [(int(p), k, t) for p, k, t in (line.split() for line in f if line.endswith("\n"))]


# ====================================================================== the fleet
@dataclass
class Kill:
    at: float
    pid: int
    in_flight: set[tuple[str, str]]
    recovered_after: Optional[float] = None


@dataclass
class Fleet:
    """Three worker processes (slots), restarted after each kill."""

    url: str
    directory: Path
    plan: Any
    children: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    outputs: dict[int, Path] = field(default_factory=dict)
    started: int = 0

    @property
    def log(self) -> Path:
        return self.directory / "side_effects.log"

    @property
    def submitted(self) -> Path:
        return self.directory / "submitted.log"

    def start(self, slot: int) -> None:
        self.started += 1
        out = self.directory / f"worker-{slot}-{self.started}.out"
        with open(out, "wb") as f:
            self.children[slot] = subprocess.Popen(
                [sys.executable, str(WORKER), self.url, str(self.log), str(self.submitted), str(slot),
                 str(self.plan.runs_per_process), str(self.plan.lease_seconds), str(self.plan.submit_pause)],
                stdout=f, stderr=subprocess.STDOUT, cwd=WORKER.parent,
            )
        self.outputs[self.children[slot].pid] = out

    def ready(self, slot: int) -> bool:
        child = self.children[slot]
        return child.poll() is None and b"ready" in self.outputs[child.pid].read_bytes()

    def check_alive(self) -> None:
        for child in self.children.values():
            if child.poll() is not None:
                raise AssertionError(
                    f"worker {child.pid} exited by itself ({child.returncode}):\n"
                    + self.outputs[child.pid].read_text()
                )

    def kill(self, slot: int) -> int:
        child = self.children[slot]
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
        return child.pid

    def stop_all(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.kill()
            child.wait(30)


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Iterator[tuple[str, Callable[[], Snapshot]]]:
    path = tmp_path / "chaos.db"
    yield f"sqlite:///{path}", sqlite_reader(path)


@pytest.fixture
def postgres_database() -> Iterator[tuple[str, Callable[[], Snapshot]]]:
    if not POSTGRES_URL:
        pytest.skip("CLOACA_TEST_POSTGRES_URL is not set")
    from pg_admin import created_database

    with created_database("cloaca_chaos_kills") as url:
        yield url, postgres_reader(url)


# ====================================================================== the scenario
def run_kill_schedule(fleet: Fleet, read: Callable[[], Snapshot], plan: Any) -> tuple[list[Kill], Snapshot]:
    """Start the fleet, kill and restart on the seeded schedule, wait for every run's end."""
    rng = random.Random(SEED)
    kills: list[Kill] = []
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    stop_watching = threading.Event()
    watcher = threading.Thread(target=watch_recovery, args=(kills, read, stop_watching), daemon=True)
    for slot in range(PROCESSES):
        fleet.start(slot)
    watcher.start()
    try:
        while len(kills) < plan.kills:
            assert time.monotonic() < deadline, f"only {len(kills)} kills before the hang guard"
            time.sleep(rng.uniform(*plan.kill_gap))
            fleet.check_alive()
            slot = rng.randrange(PROCESSES)
            if not fleet.ready(slot):
                continue  # still importing: a kill there tests nothing
            pid = fleet.kill(slot)
            runs, tasks = read()
            in_flight = {(k, t) for p, k, t in log_lines(fleet.log) if p == pid and tasks.get((k, t)) != "Completed"}
            kills.append(Kill(time.monotonic(), pid, in_flight))
            time.sleep(rng.uniform(*plan.restart_delay))
            fleet.start(slot)
        final = wait_for_every_run_to_end(fleet, read, plan, deadline)
    finally:
        stop_watching.set()
        watcher.join(30)
        fleet.stop_all()
    note_recoveries(kills, final[1], time.monotonic())  # those the watcher had no time to see
    return kills, final


def watch_recovery(kills: list[Kill], read: Callable[[], Snapshot], stop: threading.Event) -> None:
    """Note when each kill's in-flight tasks are all Completed (by whichever runner)."""
    while not stop.wait(0.1):
        if any(k.recovered_after is None for k in list(kills)):
            note_recoveries(kills, read()[1], time.monotonic())


def note_recoveries(kills: list[Kill], tasks: dict[tuple[str, str], str], now: float) -> None:
    for k in list(kills):
        if k.recovered_after is None and all(tasks.get(key) == "Completed" for key in k.in_flight):
            k.recovered_after = now - k.at


def wait_for_every_run_to_end(fleet: Fleet, read: Callable[[], Snapshot], plan: Any, deadline: float) -> Snapshot:
    expected = PROCESSES * plan.runs_per_process
    while True:
        fleet.check_alive()
        runs, tasks = read()
        acknowledged = len(acknowledgements(fleet.submitted))
        if acknowledged >= expected and all(s not in ("Pending", "Running") for s, _ in runs.values()):
            return runs, tasks
        if time.monotonic() > deadline:
            stuck = [i for i, (s, _) in runs.items() if s in ("Pending", "Running")]
            raise AssertionError(
                f"hang guard: {acknowledged}/{expected} submissions acknowledged, "
                f"{len(stuck)} runs not ended (e.g. {stuck[:3]})"
            )
        time.sleep(0.2)


def acknowledgements(path: Path) -> dict[tuple[int, int], str]:
    rows = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    return {(int(s), int(i)): e for s, i, e in rows}


def check_outcome(fleet: Fleet, kills: list[Kill], final: Snapshot, backend: str) -> None:
    runs, tasks = final
    plan = fleet.plan
    acknowledged = acknowledgements(fleet.submitted)
    assert len(kills) == plan.kills
    assert len(acknowledged) == PROCESSES * plan.runs_per_process
    missing = [e for e in acknowledged.values() if e not in runs]
    assert not missing, f"acknowledged runs not stored: {missing[:5]}"
    statuses = Counter(s for s, _ in runs.values())
    assert statuses == {"Completed": len(runs)}, statuses
    assert len(tasks) == len(TASKS) * len(runs)
    assert set(tasks.values()) == {"Completed"}

    lines = log_lines(fleet.log)
    executions = Counter((k, t) for _, k, t in lines)
    never_ran = [key for key in tasks if executions[key] == 0]
    assert not never_ran, f"tasks Completed without their side effect: {never_ran[:5]}"
    in_flight_lines = Counter(
        (k, t) for p, k, t in lines for kill in kills if kill.pid == p and (k, t) in kill.in_flight
    )
    unexplained = {key: n for key, n in executions.items() if n - 1 > in_flight_lines[key]}
    assert not unexplained, f"tasks run again though not in flight at a kill: {unexplained}"

    recoveries = [k.recovered_after for k in kills if k.in_flight]
    assert None not in recoveries  # every kill's in-flight work was completed by someone
    report(
        f"kills-{backend}", processes=PROCESSES, kills=len(kills),
        kills_with_work_in_flight=sum(1 for k in kills if k.in_flight), runs=len(runs),
        task_executions=len(lines), tasks=len(tasks),
        duplicates=sum(n - 1 for n in executions.values()),
        duplicate_bound=sum(len(k.in_flight) for k in kills),
        in_flight_per_kill=[len(k.in_flight) for k in kills],
        recovery_seconds_max=round(max(recoveries, default=0.0), 2),
        recovery_seconds_median=round(statistics.median(recoveries), 2) if recoveries else None,
        lease_seconds=plan.lease_seconds, restarts=fleet.started - PROCESSES,
    )


def test_three_sqlite_runners_killed_at_random_lose_nothing(sqlite_database, tmp_path: Path) -> None:
    url, read = sqlite_database
    fleet = Fleet(url, tmp_path, KILLS)
    kills, final = run_kill_schedule(fleet, read, KILLS)
    check_outcome(fleet, kills, final, "sqlite")


def test_three_postgres_runners_killed_at_random_lose_nothing(postgres_database, tmp_path: Path) -> None:
    url, read = postgres_database
    fleet = Fleet(url, tmp_path, KILLS)
    kills, final = run_kill_schedule(fleet, read, KILLS)
    check_outcome(fleet, kills, final, "postgres")
