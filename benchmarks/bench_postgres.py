"""Runs/s of 1, 2 and 4 runner processes sharing one PostgreSQL database.

    CLOACA_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
        python benchmarks/bench_postgres.py [--seconds 4] [--concurrency 32]

For each workflow shape (one task; ten tasks in a chain) and each process count, a fresh
schema is created, the processes start runners on it, and after a warm-up each keeps
`--concurrency` runs in flight (async no-op tasks, so the store is what is measured) for
`--seconds`. Runs completed inside the window, summed over processes, over its length is
the figure printed; "scaling" is that figure over the one-process figure.

A last table measures work shared by task: only the first process submits runs (a root
and 8 leaves of 20 ms sleep each), every process has 4 slots, and the others only claim
the ready leaves. Its runs/s can grow with the processes only because their tasks spread;
the share of leaves each process executed is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

import cloaca
from cloaca import Context, DefaultRunner, DefaultRunnerConfig

SINGLE = "bench_pg_single_task"
CHAIN = "bench_pg_ten_task_chain"
SHARED = "bench_pg_sleepy_fanout"
WORKFLOWS = {"1 task": SINGLE, "10 tasks": CHAIN}
PROCESS_COUNTS = (1, 2, 4)
WARM_UP_SECONDS = 1.0
SHARED_LEAVES = 8
SHARED_LEAF_SECONDS = 0.02
SHARED_SLOTS = 4
leaves_run = 0

with cloaca.WorkflowBuilder(SINGLE):

    @cloaca.task(id="only")
    async def _only(context: Context) -> Context:
        return context


with cloaca.WorkflowBuilder(CHAIN):
    for _i in range(10):

        def _make(i: int) -> None:
            @cloaca.task(id=f"step{i}", dependencies=[f"step{i - 1}"] if i else [])
            async def _step(context: Context) -> Context:
                return context

        _make(_i)


with cloaca.WorkflowBuilder(SHARED):

    @cloaca.task(id="root")
    async def _root(context: Context) -> Context:
        return context

    for _i in range(SHARED_LEAVES):

        def _make_leaf(i: int) -> None:
            @cloaca.task(id=f"leaf{i}", dependencies=["root"])
            async def _leaf(context: Context) -> Context:
                global leaves_run
                await asyncio.sleep(SHARED_LEAF_SECONDS)
                leaves_run += 1
                return context

        _make_leaf(_i)


# ====================================================================== child process
async def child(url: str, schema: str, workflow: str, seconds: float, concurrency: int,
                role: str = "submit") -> None:
    slots = SHARED_SLOTS if workflow == SHARED else max(64, 2 * concurrency)
    config = DefaultRunnerConfig(max_concurrent_tasks=slots, enable_cron_scheduling=False)
    async with DefaultRunner(url, _config=config, _schema=schema) as runner:
        if role == "submit":
            await runner.aexecute(workflow, Context({}))  # connections warm, statements prepared
        print("ready", flush=True)
        start_at = float(await asyncio.to_thread(sys.stdin.readline))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        window_start = start_at + WARM_UP_SECONDS
        window_end = window_start + seconds
        counted = 0
        failed = 0
        if role == "serve":  # only claims the submitter's ready tasks
            await asyncio.sleep(window_start - time.time())
            before = leaves_run
            await asyncio.sleep(window_end - time.time())
            print(json.dumps({"runs": 0, "failed": 0, "cpu": 0.0, "leaves": leaves_run - before}), flush=True)
            return
        leaves_before = 0

        async def loop() -> None:
            nonlocal counted, failed
            while time.time() < window_end:
                result = await runner.aexecute(workflow, Context({}))
                if result.status != "Completed":
                    failed += 1
                elif window_start <= time.time() <= window_end:
                    counted += 1

        async def count_leaves() -> None:
            nonlocal leaves_before
            await asyncio.sleep(window_start - time.time())
            leaves_before = leaves_run

        cpu_start = time.process_time()
        await asyncio.gather(count_leaves(), *(loop() for _ in range(concurrency)))
        cpu = (time.process_time() - cpu_start) / (time.time() - start_at)
        print(json.dumps({"runs": counted, "failed": failed, "cpu": cpu,
                          "leaves": leaves_run - leaves_before}), flush=True)


# ====================================================================== parent
def measure(url: str, workflow: str, processes: int, seconds: float,
            concurrency: int) -> tuple[float, float, list[int]]:
    """(runs/s summed over the processes, mean CPU share of one runner process, leaves run
    by each process). For SHARED, only the first process submits runs."""
    schema = f"cloaca_bench_{uuid.uuid4().hex[:10]}"
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", url, schema, workflow, str(seconds), str(concurrency),
             "serve" if workflow == SHARED and n else "submit"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for n in range(processes)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready", "a child failed"
        start_at = time.time() + 0.5
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"{start_at}\n")
            p.stdin.flush()
        total, cpu, leaves = 0, 0.0, []
        for p in procs:
            out = json.loads(p.stdout.readline())  # type: ignore[union-attr]
            if out["failed"]:
                raise RuntimeError(f"{out['failed']} runs failed")
            total += out["runs"]
            cpu += out["cpu"]
            leaves.append(out["leaves"])
            p.wait(timeout=60)
        return total / seconds, cpu / processes, leaves
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        asyncio.run(_drop_schema(url, schema))


async def _drop_schema(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, schema, workflow, seconds, concurrency, role = sys.argv[2:8]
        asyncio.run(child(url, schema, workflow, float(seconds), int(concurrency), role))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("CLOACA_TEST_POSTGRES_URL"))
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=32, help="runs in flight per process")
    args = parser.parse_args()
    if not args.url:
        parser.error("set CLOACA_TEST_POSTGRES_URL or pass --url")

    print(f"PostgreSQL runs/s, {args.concurrency} runs in flight per process, "
          f"{args.seconds:g}s windows, {os.cpu_count()} CPUs on this host (server included)")
    print(f"{'workflow':<10} {'processes':>9} {'runs/s':>9} {'tasks/s':>9} {'scaling':>8} "
          f"{'CPU/process':>12}")
    for label, workflow in WORKFLOWS.items():
        tasks = 1 if workflow == SINGLE else 10
        base = None
        for processes in PROCESS_COUNTS:
            rate, cpu, _ = measure(args.url, workflow, processes, args.seconds, args.concurrency)
            base = base or rate
            print(f"{label:<10} {processes:>9} {rate:>9.0f} {rate * tasks:>9.0f} {rate / base:>7.2f}x "
                  f"{cpu:>11.0%}", flush=True)

    print(f"\nShared by task: one process submits (root + {SHARED_LEAVES} leaves of "
          f"{SHARED_LEAF_SECONDS * 1000:g} ms), {SHARED_SLOTS} slots per process, "
          f"{args.concurrency} runs in flight")
    print(f"{'processes':>9} {'runs/s':>9} {'scaling':>8}  leaves run by each process")
    base = None
    for processes in PROCESS_COUNTS:
        rate, _, leaves = measure(args.url, SHARED, processes, args.seconds, args.concurrency)
        base = base or rate
        shares = " / ".join(f"{n / max(1, sum(leaves)):.0%}" for n in leaves)
        print(f"{processes:>9} {rate:>9.1f} {rate / base:>7.2f}x  {shares}", flush=True)


if __name__ == "__main__":
    main()
