"""Requests/s of a FastAPI endpoint that runs a one-task async workflow through cloaca, next to
the same endpoint doing the task's work directly, both served by uvicorn on 127.0.0.1.

    python benchmarks/bench_fastapi.py [--clients 32] [--load-processes 2] [--seconds 5] [--rounds 3]

The server is a separate process (`--serve`, one uvicorn worker, h11, no access log); this
script drives the load: N concurrent httpx.AsyncClients, one keep-alive connection each, spread
over P load processes (one Python client process is slower than the server), sending POST
requests back to back for a fixed time. The two endpoints are
measured alternately (direct, cloaca, direct, cloaca, ...) after a warm-up, so drift on a noisy
machine hits both alike; figures are medians over the rounds. The server's CPU time per
request (utime + stime of its process, all threads, over the measured window) is reported
too: when the load generator, not the server, is the bottleneck, requests/s understate the
difference and CPU per request does not.

The work is the same in both: hash the posted name and yield once to the loop. Through
cloaca, the endpoint awaits `runner.aexecute(...)`: the run and its task are persisted in a
SQLite file (WAL) before the response is sent, so the difference is the price of a durable,
resumable run per request. The runner is bound to uvicorn's loop (`async with` in the
lifespan) with max_concurrent_tasks raised to 1,024.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_line  # noqa: E402

WORKFLOW = "bench_http_one_task"


# ======================================================================== the server
async def work(name: str) -> dict[str, Any]:
    """The task's work: a little CPU and one trip through the loop."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    await asyncio.sleep(0)
    return {"name": name, "digest": digest}


def build_app(database_url: str) -> Any:
    import cloaca
    from fastapi import Body, FastAPI

    with cloaca.WorkflowBuilder(WORKFLOW) as builder:
        builder.description("One async task doing the benchmark's work")

        @cloaca.task(id="work")
        async def work_task(context):
            context.update_from_dict(await work(context.get("name", "")))
            return context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = cloaca.DefaultRunnerConfig(max_concurrent_tasks=1024)
        async with cloaca.DefaultRunner.with_config(database_url, config) as runner:
            app.state.runner = runner
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/direct")
    async def direct(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return {"status": "Completed", "final_context": {**body, **await work(body.get("name", ""))}}

    @app.post("/cloaca")
    async def via_cloaca(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        result = await app.state.runner.aexecute(WORKFLOW, cloaca.Context(body))
        return {"status": result.status, "execution_id": result.execution_id,
                "final_context": result.final_context.to_dict()}

    return app


def serve(port: int, database_url: str) -> None:
    import uvicorn

    uvicorn.run(build_app(database_url), host="127.0.0.1", port=port, loop="asyncio", http="h11",
                log_level="warning", access_log=False, backlog=4096)


# ======================================================================== the load
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


async def drive(base_url: str, path: str, clients: int, seconds: float,
                ready: Optional[Callable[[], Awaitable[None]]] = None) -> dict[str, Any]:
    """`clients` request loops for `seconds` against `path`: latencies, errors, elapsed."""
    import httpx

    latencies: list[float] = []
    errors = 0

    async def one_client(http: httpx.AsyncClient, index: int, stop_at: float) -> None:
        nonlocal errors
        n = 0
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            response = await http.post(path, json={"name": f"{os.getpid()}-{index}-{n}"})
            if response.status_code != 200 or response.json()["status"] != "Completed":
                errors += 1
            latencies.append(time.perf_counter() - started)
            n += 1

    # One client, one keep-alive connection each (a pool of many connections shared by many
    # tasks costs httpx more than the server spends on a request); made before the clock
    # starts, as making one (its SSL context) costs milliseconds of CPU.
    async with contextlib.AsyncExitStack() as stack:
        https = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=base_url, timeout=60.0))
            for _ in range(clients)
        ]
        if ready is not None:
            await ready()
        began = time.perf_counter()
        stop_at = began + seconds
        await asyncio.gather(*(one_client(http, i, stop_at) for i, http in enumerate(https)))
        elapsed = time.perf_counter() - began
    return {"latencies": latencies, "errors": errors, "elapsed": elapsed}


def load_worker(base_url: str, path: str, clients: int, seconds: float) -> None:
    """A load-generating process: says "ready", waits for "go", prints its figures as JSON."""

    async def ready() -> None:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)

    figures = asyncio.run(drive(base_url, path, clients, seconds, ready))
    print(json.dumps(figures), flush=True)


def load(base_url: str, path: str, args: argparse.Namespace, seconds: float,
         server_pid: int) -> dict[str, float]:
    """`args.clients` concurrent request loops, spread over `args.load_processes` processes,
    for `seconds`: requests/s, latency percentiles, and the server's CPU time per request
    (which a load generator slower than the server cannot hide)."""
    shares = [args.clients // args.load_processes + (i < args.clients % args.load_processes)
              for i in range(args.load_processes)]
    workers = [
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--load-worker", "--url", base_url,
             "--path", path, "--clients", str(share), "--seconds", str(seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for share in shares if share
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        cpu_before = cpu_seconds(server_pid)
        began = time.perf_counter()
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = [json.loads(worker.communicate(timeout=seconds + 120)[0]) for worker in workers]
        elapsed = time.perf_counter() - began
        server_cpu = cpu_seconds(server_pid) - cpu_before
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    latencies = sorted(x for r in results for x in r["latencies"])
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "server_cpu_us": 1e6 * server_cpu / max(1, len(latencies)),
        "server_cpu_pct": 100 * server_cpu / elapsed,
        "errors": sum(r["errors"] for r in results),
        "requests": len(latencies),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_until_serving(base_url: str, server: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=base_url) as http:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"the server exited with code {server.returncode}")
            try:
                if (await http.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start within 30 s")
            await asyncio.sleep(0.05)


def measure(args: argparse.Namespace, base_url: str,
            server_pid: int) -> dict[str, list[dict[str, float]]]:
    for path in ("/direct", "/cloaca"):  # warm-up: connections, code paths, the SQLite file
        load(base_url, path, args, args.warmup, server_pid)
    figures: dict[str, list[dict[str, float]]] = {"/direct": [], "/cloaca": []}
    for round_number in range(args.rounds):
        for path in ("/direct", "/cloaca"):
            result = load(base_url, path, args, args.seconds, server_pid)
            figures[path].append(result)
            print(f"  round {round_number + 1} {path:8} {result['rps']:9,.0f} req/s "
                  f"(p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, server CPU "
                  f"{result['server_cpu_us']:,.0f} us/request at {result['server_cpu_pct']:.0f}%, "
                  f"{result['errors']} errors)", file=sys.stderr, flush=True)
    return figures


def report(args: argparse.Namespace, figures: dict[str, list[dict[str, float]]]) -> None:
    def med(path: str, key: str) -> float:
        return statistics.median(r[key] for r in figures[path])

    direct, via = med("/direct", "rps"), med("/cloaca", "rps")
    errors = sum(r["errors"] for rs in figures.values() for r in rs)
    print()
    print(f"FastAPI + uvicorn (1 worker, h11) on 127.0.0.1, {args.clients} concurrent clients "
          f"in {args.load_processes} load process(es), "
          f"{args.seconds:g} s x {args.rounds} rounds per endpoint, medians")
    print(f"machine: {machine_line()}")
    print()
    print("| endpoint | requests/s | p50 latency | p99 latency | server CPU / request | server CPU busy |")
    print("|---|---:|---:|---:|---:|---:|")
    for path, label in (("/direct", "task's work done directly"),
                        ("/cloaca", "one-task async workflow via `aexecute` (SQLite file)")):
        print(f"| {label} | {med(path, 'rps'):,.0f} | {med(path, 'p50_ms'):.1f} ms | "
              f"{med(path, 'p99_ms'):.1f} ms | {med(path, 'server_cpu_us'):,.0f} µs | "
              f"{med(path, 'server_cpu_pct'):.0f}% |")
    print()
    cpu_direct, cpu_via = med("/direct", "server_cpu_us"), med("/cloaca", "server_cpu_us")
    print(f"ratio cloaca / direct: {via / direct:.2f} in requests/s, "
          f"{cpu_via / cpu_direct:.2f} in server CPU per request "
          f"(+{cpu_via - cpu_direct:,.0f} µs per request); failed requests: {errors}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load-processes", type=int, default=2,
                        help="processes sharing the clients (one Python client is slower "
                             "than the server)")
    parser.add_argument("--load-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.database_url)
        return
    if args.load_worker:
        load_worker(args.url, args.path, args.clients, args.seconds)
        return

    directory = tempfile.mkdtemp(prefix="cloaca-bench-fastapi-")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server: Optional[subprocess.Popen[bytes]] = None
    try:
        server = subprocess.Popen([
            sys.executable, os.path.abspath(__file__), "--serve", "--port", str(port),
            "--database-url", "sqlite:///" + os.path.join(directory, "bench.db"),
        ])
        asyncio.run(wait_until_serving(base_url, server))
        figures = measure(args, base_url, server.pid)
    finally:
        if server is not None and server.poll() is None:
            server.terminate()  # SIGTERM: uvicorn's graceful stop, the runner's shutdown
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(directory, ignore_errors=True)
    report(args, figures)


if __name__ == "__main__":
    main()
