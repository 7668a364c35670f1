"""How close cloaca could come to the SQLite limit if its writes cost nothing: the engine's
own cost, measured against the same-run limit.

Issue 19 asks for costs within 2x of raw aiosqlite doing the minimal writes with group
commit (fan-out, 1,000 runs together) and for runs/s at >= 0.5x of it (100 / 1,000 / 10,000
runs in flight). This script runs those workloads (bench_core.py, bench_inflight.py) in one
process, rounds alternating three modes:

* ``as is``: the engine as shipped;
* ``no SQL``: the SQLite store's writes of runs and their progress skipped: each write's
  rows are still made (`Rows.rows()`), its result handed back at once, nothing executed or
  committed (the runner's other writes, at its start and end, are made as usual);
* ``no SQL, no GC``: the same with the cyclic garbage collector disabled.

The two last are not modes of the engine (nothing is persisted): they bound from below what any
change to what the store writes, or how, could reach. The limit always writes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_core  # noqa: E402
import bench_inflight  # noqa: E402
from _common import machine_line, median, table  # noqa: E402

import cloaca._store.sqlite as sqlite_store  # noqa: E402
from cloaca._store.sqlite_group import Rows  # noqa: E402

MODES = ("as is", "no SQL", "no SQL, no GC")


_WRITE = sqlite_store.SQLiteStore._write


def _skip_writes(self: Any, op: Any, rows: int = 1, new_run: bool = False) -> "asyncio.Future[Any]":
    """A write of runs and their progress handed back unwritten (its rows still made); any
    other write (the runner's own, at its start and end) written as usual."""
    if not isinstance(op, Rows):
        return _WRITE(self, op, rows, new_run)
    future = asyncio.get_running_loop().create_future()
    future.set_result(op.rows()[1])
    return future


@contextmanager
def mode(name: str) -> Iterator[None]:
    """The engine in mode `name` for the duration."""
    if name != "as is":
        sqlite_store.SQLiteStore._write = _skip_writes  # type: ignore[method-assign]
    if name.endswith("no GC"):
        gc.collect()
        gc.disable()
    try:
        yield
    finally:
        gc.enable()
        sqlite_store.SQLiteStore._write = _WRITE  # type: ignore[method-assign]


async def _core(plan: bench_core.Plan) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        url = "sqlite:///" + os.path.join(tmp, "bound.db")
        rows, _ = await bench_core.async_workloads(url, "file", {"fanout", "runs"}, plan)
    return {r.workload: r.cost_ratio("grouped") or float("nan") for r in rows if ", sync no-op" not in r.workload}


async def _inflight(sizes: list[int], reps: int) -> dict[str, float]:
    rows = await bench_inflight.measure_sqlite(sizes, reps)
    return {f"{row[0]} runs in flight (runs/s ÷ limit's)": float(row[3].rstrip("×")) for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each running every mode once")
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    parser.add_argument("--sizes", default="100,1000,10000", help="runs in flight")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 3
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes must be comma-separated whole numbers of runs, got {args.sizes!r}")
    bench_core.register_workflows()
    plan = bench_core.Plan(1, 3, 3, 0, 0)
    figures: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}
    for _ in range(args.rounds):
        for name in MODES:
            with mode(name):
                measured = asyncio.run(_core(plan))
                measured.update(asyncio.run(_inflight(sizes, 3)))
            for workload, value in measured.items():
                figures[name].setdefault(workload, []).append(value)
    workloads = list(figures[MODES[0]])
    print("## bound_without_writes.py: cloaca's cost with its SQL skipped, against the same-run limit\n")
    print(f"Machine: {machine_line()}.  ")
    print(f"Medians of {args.rounds} rounds (modes alternating; each figure itself a median of 3); "
          "fan-out and runs: cost ratio (≤ 2× sought); in flight: runs/s ratio (≥ 0.5× sought).\n")
    print(table(["workload", *MODES],
                [[w] + [f"{median(figures[m][w]):.2f}×" for m in MODES] for w in workloads]))


if __name__ == "__main__":
    main()
