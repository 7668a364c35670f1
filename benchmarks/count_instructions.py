"""CPU instructions per unit of work, this checkout against another, counted by callgrind.

    python benchmarks/count_instructions.py --baseline ../base [--only runs,chain-async]

Timings on a shared machine drift by tens of percent; instruction counts do not (callgrind
counts the same for the same binary and inputs whatever else runs). Each workload runs in a
fresh interpreter of each checkout (its own venv, its own `cloaca`, through the public API
only) under `valgrind --tool=callgrind`, twice: with N units and with 2N. The difference
over N is the cost of one unit, start-up and imports excluded; every thread counts (the
SQLite writer's, task threads). What it does not see: time waiting for the disk or for
locks, and how work spreads over cores — bench_core.py measures those.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

from _common import fmt, table

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOADS = {
    # name: (unit, N)
    "runs": ("run", 200),
    "chain-async": ("task", 100),
    "chain-sync": ("task", 100),
    "fanout-async": ("task", 200),
    "roundtrip": ("run", 50),
}

CHILD = r'''
import asyncio, os, sys, tempfile
import cloaca

workload, n = sys.argv[1], int(sys.argv[2])
directory = tempfile.mkdtemp()
url = "sqlite:///" + os.path.join(directory, "bench.db")

def body(is_async):
    if is_async:
        async def task(context):
            return None
    else:
        def task(context):
            return None
    return task

def chain(name, is_async, length):
    with cloaca.WorkflowBuilder(name):
        for i in range(length):
            cloaca.task(id=f"t{i}", dependencies=[f"t{i - 1}"] if i else [])(body(is_async))

def fanout(name, is_async, width):
    with cloaca.WorkflowBuilder(name):
        cloaca.task(id="root")(body(is_async))
        for i in range(width):
            cloaca.task(id=f"leaf{i}", dependencies=["root"])(body(is_async))
        cloaca.task(id="join", dependencies=[f"leaf{i}" for i in range(width)])(body(is_async))

config = cloaca.DefaultRunnerConfig(max_concurrent_tasks=1000)

async def run_async(name, count):
    async with cloaca.DefaultRunner.with_config(url, config) as runner:
        await runner.aexecute(name, cloaca.Context({}))  # warm
        results = await asyncio.gather(*(runner.aexecute(name, cloaca.Context({})) for _ in range(count)))
        assert all(r.status == "Completed" for r in results)

if workload == "runs":
    chain("one", True, 1)
    asyncio.run(run_async("one", n))
elif workload == "chain-async":
    chain("chain", True, n)
    asyncio.run(run_async("chain", 1))
elif workload == "chain-sync":
    chain("chain", False, n)
    asyncio.run(run_async("chain", 1))
elif workload == "fanout-async":
    fanout("fan", True, n)
    asyncio.run(run_async("fan", 1))
elif workload == "roundtrip":
    chain("one", False, 1)
    with cloaca.DefaultRunner(url) as runner:
        for _ in range(n + 1):
            assert runner.execute("one", cloaca.Context({})).status == "Completed"
else:
    raise SystemExit(f"unknown workload {workload}")
'''


def instructions(checkout: str, workload: str, n: int) -> int:
    """Instructions callgrind counts for one run of the workload with `n` units."""
    python = os.path.join(checkout, ".venv", "bin", "python")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", python, "-c", CHILD,
             workload, str(n)],
            cwd=checkout, capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise SystemExit(f"{workload} in {checkout} failed:\n{proc.stderr[-3000:]}")
        match = re.search(r"Collected : (\d+)", proc.stderr)
        if match is None:
            raise SystemExit(f"no instruction count in callgrind's output:\n{proc.stderr[-2000:]}")
        return int(match.group(1))


def per_unit(checkout: str, workload: str, n: int) -> float:
    return (instructions(checkout, workload, 2 * n) - instructions(checkout, workload, n)) / n


def _commit(checkout: str) -> str:
    proc = subprocess.run(["git", "-C", checkout, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or "unknown commit"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the other checkout (with its .venv)")
    parser.add_argument("--only", default=",".join(WORKLOADS))
    args = parser.parse_args()
    rows = []
    for workload in args.only.split(","):
        unit, n = WORKLOADS[workload]
        base = per_unit(os.path.abspath(args.baseline), workload, n)
        this = per_unit(HERE, workload, n)
        rows.append([workload, unit, fmt(base / 1000), fmt(this / 1000), f"{this / base:.3f}"])
        print(f"{workload}: baseline {base:,.0f}, this {this:,.0f} instructions/{unit}", file=sys.stderr)
    print(f"Instructions per unit (thousands), counted by callgrind (N and 2N units), this checkout "
          f"({_commit(HERE)}) against {args.baseline} ({_commit(args.baseline)}).\n")
    print(table(["workload", "per", "baseline", "this", "this ÷ baseline"], rows))


if __name__ == "__main__":
    main()
