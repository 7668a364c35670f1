"""Runs/s of 1, 2 and 4 runner processes sharing one PostgreSQL database, next to raw asyncpg.

    CLOACA_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
        python benchmarks/bench_postgres.py [--seconds 4] [--concurrency 32] [--rounds 3]

For each workflow shape (one task; ten tasks in a chain) and each process count, a fresh
schema is created, the processes start runners on it, and after a warm-up each keeps
`--concurrency` runs in flight (async no-op tasks, so the store is what is measured) for
`--seconds`. Runs completed inside the window, summed over processes, over its length is
the figure printed; "scaling" is that figure over the one-process figure.

Next to each, the limit: as many processes doing, with raw asyncpg, the minimal writes of
the same runs with group commit (baselines_postgres.py), on a fresh schema of their own,
with the same runs in flight. The CPU columns say where the machine's cores went during
the window: the runner (or limit) processes, the PostgreSQL server processes serving
their connections (the server's own background processes, e.g. its WAL writer, not
counted), and the whole host busy, whoever used it (what is left of its cores is headroom). Every measurement is repeated `--rounds`
times, cloaca and the limit interleaved, and the medians are printed.

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
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import baselines_postgres as bpg  # noqa: E402
import cloaca  # noqa: E402
from cloaca import Context, DefaultRunner, DefaultRunnerConfig  # noqa: E402

SINGLE = "bench_pg_single_task"
CHAIN = "bench_pg_ten_task_chain"
SHARED = "bench_pg_sleepy_fanout"
WORKFLOWS = {"1 task": (SINGLE, 1), "10 tasks": (CHAIN, 10)}
PROCESS_COUNTS = (1, 2, 4)
WARM_UP_SECONDS = 1.0
SHARED_LEAVES = 8
SHARED_LEAF_SECONDS = 0.02
SHARED_SLOTS = 4
GOAL_SCALING_AT_2 = 1.6
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


# ====================================================================== child processes
async def _window(start_at: float, seconds: float) -> tuple[float, float]:
    """Wait for the common start; (window start, window end) after the warm-up."""
    await asyncio.sleep(max(0.0, start_at - time.time()))
    return start_at + WARM_UP_SECONDS, start_at + WARM_UP_SECONDS + seconds


async def _closed_loop(one: Any, concurrency: int, start_at: float, seconds: float) -> dict[str, Any]:
    """Keep `concurrency` runs in flight from `start_at` to the window's end; the runs that
    ended inside the window, and this process's CPU share over the whole time."""
    window_start, window_end = await _window(start_at, seconds)
    counted = 0

    async def loop() -> None:
        nonlocal counted
        while time.time() < window_end:
            await one()
            if window_start <= time.time() <= window_end:
                counted += 1

    cpu_start = time.process_time()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return {"runs": counted, "cpu": (time.process_time() - cpu_start) / (time.time() - start_at)}


async def child(url: str, schema: str, workflow: str, seconds: float, concurrency: int, role: str) -> None:
    shared = workflow == SHARED
    slots = SHARED_SLOTS if shared else max(64, 2 * concurrency)
    config = DefaultRunnerConfig(max_concurrent_tasks=slots, max_concurrent_async_tasks=slots,
                                 enable_cron_scheduling=False)
    async with DefaultRunner(url, _config=config, _schema=schema) as runner:
        if role == "submit":
            await runner.aexecute(workflow, Context({}))  # connections warm, statements prepared
        print("ready", flush=True)
        start_at = float(await asyncio.to_thread(sys.stdin.readline))
        if role == "serve":  # only claims the submitter's ready tasks
            window_start, window_end = await _window(start_at, seconds)
            await asyncio.sleep(window_start - time.time())
            before = leaves_run
            await asyncio.sleep(window_end - time.time())
            print(json.dumps({"runs": 0, "cpu": 0.0, "leaves": leaves_run - before}), flush=True)
            return

        async def one() -> None:
            result = await runner.aexecute(workflow, Context({}))
            if result.status != "Completed":
                raise RuntimeError(f"a benchmark run ended {result.status}: {result.error_message}")

        leaves = {"before": 0}

        async def count_leaves() -> None:
            window_start, _ = await _window(start_at, seconds)
            await asyncio.sleep(window_start - time.time())
            leaves["before"] = leaves_run

        out, _ = await asyncio.gather(_closed_loop(one, concurrency, start_at, seconds), count_leaves())
        print(json.dumps({**out, "leaves": leaves_run - leaves["before"]}), flush=True)


async def limit_child(url: str, schema: str, tasks: int, seconds: float, concurrency: int) -> None:
    import asyncpg

    pool = await asyncpg.create_pool(url, min_size=bpg.POOL_SIZE, max_size=bpg.POOL_SIZE,
                                     server_settings={"search_path": f'"{schema}"'})
    try:
        writer = bpg.GroupWriter(pool)
        await bpg.one_run(writer, tasks)  # connections warm, statements prepared
        print("ready", flush=True)
        start_at = float(await asyncio.to_thread(sys.stdin.readline))
        out = await _closed_loop(lambda: bpg.one_run(writer, tasks), concurrency, start_at, seconds)
        print(json.dumps({**out, "leaves": 0}), flush=True)
    finally:
        await pool.close()


# ====================================================================== parent
def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by these processes (those gone count for nothing)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def backends_of(url: str, pids: list[int]) -> list[int]:
    """The server processes serving the connections of processes `pids` (the server on
    this host): matched by the TCP ports those processes connect from."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                for line in list(lines)[1:]:
                    fields = line.split()
                    if fields[9] in inodes:
                        ports.append(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return asyncio.run(_backend_pids(url, ports))


async def _backend_pids(url: str, ports: list[int]) -> list[int]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1::int[])", ports)
    finally:
        await conn.close()
    return [r[0] for r in rows]


def host_busy_seconds() -> float:
    """CPU seconds the whole host has spent busy so far (all cores; /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def measure(url: str, side: str, workflow: str, tasks: int, processes: int, seconds: float,
            concurrency: int) -> dict[str, Any]:
    """runs/s summed over the processes; CPU (in cores) of the processes, of their server
    backends and of the whole host during the window; leaves run by each process. For SHARED, only the first process
    submits runs."""
    prefix = "cloaca_bench" if side == "cloaca" else "cloaca_bench_limit"
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    if side == "limit":
        asyncio.run(_create_limit_schema(url, schema))
    role = lambda n: "serve" if workflow == SHARED and n else "submit"  # noqa: E731
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", side, url, schema, workflow, str(seconds),
             str(concurrency), role(n), str(tasks)],
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
        time.sleep(max(0.0, start_at + WARM_UP_SECONDS - time.time()))
        backends = backends_of(url, [p.pid for p in procs])
        server_start, host_start = cpu_seconds(backends), host_busy_seconds()
        time.sleep(max(0.0, start_at + WARM_UP_SECONDS + seconds - time.time()))
        server = (cpu_seconds(backends) - server_start) / seconds
        host = (host_busy_seconds() - host_start) / seconds
        outs = [json.loads(p.stdout.readline()) for p in procs]  # type: ignore[union-attr]
        for p in procs:
            p.wait(timeout=60)
        return {"rate": sum(o["runs"] for o in outs) / seconds, "cpu": sum(o["cpu"] for o in outs),
                "server": server, "host": host, "leaves": [o["leaves"] for o in outs]}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        asyncio.run(bpg.drop_schema(url, schema))


async def _create_limit_schema(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await bpg.create_schema(conn, schema)
    finally:
        await conn.close()


def _median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        side, url, schema, workflow, seconds, concurrency, role, tasks = sys.argv[2:10]
        if side == "limit":
            asyncio.run(limit_child(url, schema, int(tasks), float(seconds), int(concurrency)))
        else:
            asyncio.run(child(url, schema, workflow, float(seconds), int(concurrency), role))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("CLOACA_TEST_POSTGRES_URL"))
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=32, help="runs in flight per process")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-shared", action="store_true", help="leave out the shared-by-task table")
    parser.add_argument("--json", help="also write every measurement to this file")
    args = parser.parse_args()
    if not args.url:
        parser.error("set CLOACA_TEST_POSTGRES_URL or pass --url")

    figures: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for round_ in range(args.rounds):
        for label, (workflow, tasks) in WORKFLOWS.items():
            for processes in PROCESS_COUNTS:
                for side in ("cloaca", "limit"):
                    got = measure(args.url, side, workflow, tasks, processes, args.seconds, args.concurrency)
                    figures.setdefault((label, side, processes), []).append(got)
                    print(f"round {round_ + 1}: {label}, {processes} process(es), {side}: "
                          f"{got['rate']:,.0f} runs/s", file=sys.stderr, flush=True)

    print(f"PostgreSQL runs/s, {args.concurrency} runs in flight per process, {args.seconds:g}s "
          f"windows, medians of {args.rounds} rounds (cloaca and the limit interleaved), "
          f"{os.cpu_count()} CPUs on this host (server included). CPU in cores during the "
          f"window: runner (or limit) processes together / PostgreSQL server / whole host busy.\n")
    print("| workflow | processes | cloaca runs/s | scaling | limit runs/s | limit scaling | "
          "cloaca ÷ limit | CPU cloaca / server / host | CPU limit / server / host |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, (_, tasks) in WORKFLOWS.items():
        base: dict[str, Optional[float]] = {"cloaca": None, "limit": None}
        for processes in PROCESS_COUNTS:
            row = {}
            for side in ("cloaca", "limit"):
                got = figures[(label, side, processes)]
                row[side] = {k: _median([g[k] for g in got]) for k in ("rate", "cpu", "server", "host")}
                base[side] = base[side] or row[side]["rate"]
            c, lim = row["cloaca"], row["limit"]
            print(f"| {label} | {processes} | **{c['rate']:,.0f}** | {c['rate'] / base['cloaca']:.2f}× "
                  f"| {lim['rate']:,.0f} | {lim['rate'] / base['limit']:.2f}× "
                  f"| {c['rate'] / lim['rate']:.2f}× | {c['cpu']:.2f} / {c['server']:.2f} / {c['host']:.2f} "
                  f"| {lim['cpu']:.2f} / {lim['server']:.2f} / {lim['host']:.2f} |", flush=True)
    print(f"\nGoal: cloaca scaling ≥ {GOAL_SCALING_AT_2}× at 2 processes while the server has headroom.")
    shared: dict[int, list[dict[str, Any]]] = {}
    if not args.skip_shared:
        shared = print_shared(args)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"closed_loop": [[*key, got] for key, got in figures.items()],
                       "shared": [[processes, got] for processes, got in shared.items()]}, out)


def print_shared(args: argparse.Namespace) -> dict[int, list[dict[str, Any]]]:
    """The shared-by-task table; its measurements by process count."""
    print(f"\nShared by task: one process submits (root + {SHARED_LEAVES} leaves of "
          f"{SHARED_LEAF_SECONDS * 1000:g} ms), {SHARED_SLOTS} slots per process, "
          f"{args.concurrency} runs in flight; medians of {args.rounds}\n")
    print("| processes | runs/s | scaling | leaves run by each process |")
    print("|---|---|---|---|")
    base_rate = None
    shared = {}
    for processes in PROCESS_COUNTS:
        got = shared[processes] = [
            measure(args.url, "cloaca", SHARED, 9, processes, args.seconds, args.concurrency)
            for _ in range(args.rounds)
        ]
        rate = _median([g["rate"] for g in got])
        base_rate = base_rate or rate
        leaves = [sum(g["leaves"][n] for g in got) for n in range(processes)]
        shares = " / ".join(f"{n / max(1, sum(leaves)):.0%}" for n in leaves)
        print(f"| {processes} | {rate:.1f} | {rate / base_rate:.2f}× | {shares} |", flush=True)
    return shared


if __name__ == "__main__":
    main()
