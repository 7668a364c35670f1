"""A/B experiments behind PROFILE.md: what candidate engine changes would buy.

    python benchmarks/experiments.py [--reps 9] [--only NAME,...]

Each experiment monkeypatches cloaca *in this process only* (nothing under cloaca/ is
changed) and alternates unpatched and patched repetitions of the async chain, the async
fan-out and 1,000 runs, on one runner (SQLite file, max_concurrent_tasks=1000); it prints the
medians and the change. The patches reach into engine internals, so an experiment may stop
applying once the engine changes; it then reports that instead of a figure.

  inline-small   store: run a group transaction on the loop thread when it holds <= 8
                 changes (no thread hop), in aiosqlite's thread otherwise
  gc-threshold   gc.set_threshold(50_000, 20, 20) while measuring (upper bound of what
                 fewer live container objects per run would save)
  lean-wait      Engine.wait awaits the run's future directly (no wait_for + shield)
  lean-callbacks parse a task's output for on_success / on_failure only when one is set
  no-deadline    no per-task asyncio.timeout (upper bound of a cheaper timeout mechanism)
  lazy-result    no RFC 3339 formatting of task times when building WorkflowResult
  no-savepoints  store: a group transaction without a SAVEPOINT/RELEASE pair per change
                 (the optimistic path of "replay with savepoints only if a change fails")
  no-close-fires store: skip the UPDATE of schedule_executions when a run finishes (needed
                 only for runs started by a trigger or cron fire)
  all-but-inline lean-wait + lean-callbacks + lazy-result + gc-threshold together
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import shutil
import statistics
import tempfile
from typing import Any, Callable

import aiosqlite

# inline-small needs the connection usable from the loop thread; harmless for the others.
_connect = aiosqlite.connect
aiosqlite.connect = functools.partial(_connect, check_same_thread=False)  # type: ignore[assignment]

import bench_core as core  # noqa: E402
from _common import machine_line, table  # noqa: E402

import cloaca  # noqa: E402
import cloaca._runner as runner_module  # noqa: E402
from cloaca._context import Context  # noqa: E402
from cloaca._engine import executor as ex  # noqa: E402
from cloaca._store import sqlite as st  # noqa: E402

Patch = tuple[Callable[[], None], Callable[[], None]]


def _swap(owner: Any, name: str, value: Any) -> Patch:
    original = getattr(owner, name)
    return (lambda: setattr(owner, name, value), lambda: setattr(owner, name, original))


# ---------------------------------------------------------------------------- the patches
INLINE_LIMIT = 8


async def _hybrid_flush(self: Any) -> None:
    try:
        while self._pending:
            batch, self._pending = self._pending[:st._MAX_BATCH], self._pending[st._MAX_BATCH:]
            conn = self._require_conn()
            ops = [op for op, _ in batch]
            try:
                if len(ops) <= INLINE_LIMIT:
                    outcomes = st._run_batch(conn._conn, ops)
                else:
                    outcomes = await conn._execute(st._run_batch, conn._conn, ops)
            except BaseException as exc:
                outcomes = [(False, exc)] * len(batch)
            for (_, future), (ok, value) in zip(batch, outcomes):
                if not future.done():
                    future.set_result(value) if ok else future.set_exception(value)
    finally:
        self._flusher = None


async def _lean_wait(self: Any, run: Any, timeout: Any) -> Any:
    return await run.done


async def _lean_steps(self: Any, run: Any, state: Any, slot: Any) -> None:
    definition = state.definition
    input_json = self._input_json(run, state)
    try:
        ok, output_json, error, transient = await self._attempt(definition, input_json, slot)
    finally:
        slot.give_back()
        self._start_queued()
    if ok:
        if definition.on_success is not None:
            await self._call(definition.on_success, definition.id,
                             Context._from_trusted(json.loads(output_json)))
        await self._complete(run, state, output_json)
    else:
        if definition.on_failure is not None:
            await self._call(definition.on_failure, definition.id, error,
                             Context._from_trusted(json.loads(input_json)))
        await self._fail_attempt(run, state, error, transient)


class _NoDeadline:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: Any) -> bool:
        return False


def _batch_without_savepoints(conn: Any, ops: list[Any]) -> list[tuple[bool, Any]]:
    cur = conn.cursor()
    cur.execute("BEGIN IMMEDIATE")
    try:
        outcomes = [(True, op(cur)) for op in ops]
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    return outcomes


def _gc_patch() -> Patch:
    original = gc.get_threshold()
    return (lambda: gc.set_threshold(50_000, 20, 20), lambda: gc.set_threshold(*original))


def _combine(*patches: Patch) -> Patch:
    return (lambda: [p[0]() for p in patches] and None, lambda: [p[1]() for p in reversed(patches)] and None)


def patches() -> dict[str, Patch]:
    lean_wait = _swap(ex.Engine, "wait", _lean_wait)
    lean_callbacks = _swap(ex.Engine, "_run_task_steps", _lean_steps)
    lazy_result = _swap(runner_module, "rfc3339", lambda timestamp: None)
    gc_threshold = _gc_patch()
    return {
        "inline-small": _swap(st.SQLiteStore, "_flush", _hybrid_flush),
        "gc-threshold": gc_threshold,
        "lean-wait": lean_wait,
        "lean-callbacks": lean_callbacks,
        "no-deadline": _swap(ex, "deadline", lambda seconds: _NoDeadline()),
        "lazy-result": lazy_result,
        "no-savepoints": _swap(st, "_run_batch", _batch_without_savepoints),
        "no-close-fires": _swap(st.q, "CLOSE_FIRES_OF_RUN", "SELECT ?, ?, ?"),
        "all-but-inline": _combine(lean_wait, lean_callbacks, lazy_result, gc_threshold),
    }


# ---------------------------------------------------------------------------- measuring
async def measure(names: list[str], reps: int) -> list[list[str]]:
    tmp = tempfile.mkdtemp(prefix="cloaca-exp-")
    config = cloaca.DefaultRunnerConfig(max_concurrent_tasks=core.ASYNC_CONCURRENCY)
    table_rows: list[list[str]] = []
    available = patches()
    try:
        async with cloaca.DefaultRunner.with_config("sqlite:///" + os.path.join(tmp, "x.db"), config) as r:
            workloads = {
                "chain (µs/task)": (lambda: core.engine_chain(r, "async"), core.CHAIN),
                "fan-out (µs/task)": (lambda: core.engine_fanout(r, "async"), core.WIDTH + 2),
                "1,000 runs (µs/run)": (lambda: core.engine_runs(r), core.RUNS),
            }
            for name in names:
                apply, undo = available[name]
                row = [name]
                for fn, units in workloads.values():
                    try:
                        await fn()
                        base, patched = [], []
                        for _ in range(reps):
                            base.append(await fn())
                            apply()
                            try:
                                patched.append(await fn())
                            finally:
                                undo()
                    except Exception as exc:  # the engine moved on: the patch no longer fits
                        undo()
                        row.append(f"did not apply ({type(exc).__name__})")
                        continue
                    a = statistics.median(base) / units * 1e6
                    b = statistics.median(patched) / units * 1e6
                    row.append(f"{a:.0f} → {b:.0f} ({100 * (b - a) / a:+.0f}%)")
                table_rows.append(row)
                core.log(f"experiments: {name} done")
            header = list(workloads)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [header] + table_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    core.register_workflows()
    names = [n for n in patches() if not args.only or n in args.only.split(",")]
    rows = asyncio.run(measure(names, args.reps))
    print("## A/B experiments: candidate engine changes (monkeypatched, this process only)\n")
    print(f"Machine: {machine_line()}. Median of {args.reps} alternating unpatched/patched "
          "repetitions; figures are µs per task (per run for 1,000 runs), unpatched → patched.\n")
    print(table(["experiment"] + rows[0], rows[1:]))


if __name__ == "__main__":
    main()
