"""Runs/s of 1, 2 and 4 runner processes sharing one PostgreSQL database.

    CLOACA_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
        python benchmarks/bench_postgres.py [--seconds 4] [--concurrency 32]

For each workflow shape (one task; ten tasks in a chain) and each process count, a fresh
schema is created, the processes start runners on it, and after a warm-up each keeps
`--concurrency` runs in flight (async no-op tasks, so the store is what is measured) for
`--seconds`. Runs completed inside the window, summed over processes, over its length is
the figure printed; "scaling" is that figure over the one-process figure.
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
WORKFLOWS = {"1 task": SINGLE, "10 tasks": CHAIN}
PROCESS_COUNTS = (1, 2, 4)
WARM_UP_SECONDS = 1.0

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


# ====================================================================== child process
async def child(url: str, schema: str, workflow: str, seconds: float, concurrency: int) -> None:
    config = DefaultRunnerConfig(max_concurrent_tasks=max(64, 2 * concurrency),
                                 enable_cron_scheduling=False)
    async with DefaultRunner(url, _config=config, _schema=schema) as runner:
        await runner.aexecute(workflow, Context({}))  # connections warm, statements prepared
        print("ready", flush=True)
        start_at = float(await asyncio.to_thread(sys.stdin.readline))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        window_start = start_at + WARM_UP_SECONDS
        window_end = window_start + seconds
        counted = 0
        failed = 0

        async def loop() -> None:
            nonlocal counted, failed
            while time.time() < window_end:
                result = await runner.aexecute(workflow, Context({}))
                if result.status != "Completed":
                    failed += 1
                elif window_start <= time.time() <= window_end:
                    counted += 1

        cpu_start = time.process_time()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        cpu = (time.process_time() - cpu_start) / (time.time() - start_at)
        print(json.dumps({"runs": counted, "failed": failed, "cpu": cpu}), flush=True)


# ====================================================================== parent
def measure(url: str, workflow: str, processes: int, seconds: float,
            concurrency: int) -> tuple[float, float]:
    """(runs/s summed over the processes, mean CPU share of one runner process)."""
    schema = f"cloaca_bench_{uuid.uuid4().hex[:10]}"
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", url, schema, workflow, str(seconds), str(concurrency)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for _ in range(processes)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready", "a child failed"
        start_at = time.time() + 0.5
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"{start_at}\n")
            p.stdin.flush()
        total, cpu = 0, 0.0
        for p in procs:
            out = json.loads(p.stdout.readline())  # type: ignore[union-attr]
            if out["failed"]:
                raise RuntimeError(f"{out['failed']} runs failed")
            total += out["runs"]
            cpu += out["cpu"]
            p.wait(timeout=60)
        return total / seconds, cpu / processes
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
        url, schema, workflow, seconds, concurrency = sys.argv[2:7]
        asyncio.run(child(url, schema, workflow, float(seconds), int(concurrency)))
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
            rate, cpu = measure(args.url, workflow, processes, args.seconds, args.concurrency)
            base = base or rate
            print(f"{label:<10} {processes:>9} {rate:>9.0f} {rate * tasks:>9.0f} {rate / base:>7.2f}x "
                  f"{cpu:>11.0%}", flush=True)


if __name__ == "__main__":
    main()
