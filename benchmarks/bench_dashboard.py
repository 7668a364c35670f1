"""The dashboard's runs page and `api/runs` over 100,000 runs in a SQLite file.

A SQLite file gets `--runs` finished runs (three workflows; 90 % Completed, 8 % Failed, 2 %
Running under a live lease of a runner that is not this one), written through the store's
`create_execution` in concurrent batches. A `DefaultRunner` bound to this script's loop
serves `cloaca.dashboard.create_app(runner)` over httpx's ASGI transport (no network). For
each request (page 1, a deep page, a status filter, a workflow filter, both) the median and
p95 of `--repeat` requests, against two baselines measured in the same process: the static
CSS file through the same app (the framework's own cost) and the two runner calls the page
makes (`acount_executions` + `alist_executions`: the data's cost).

    python benchmarks/bench_dashboard.py                    # 100,000 runs
    python benchmarks/bench_dashboard.py --with-indexes     # plus indexes on (workflow, status, time)
    python benchmarks/bench_dashboard.py --quick            # 20,000 runs, 10 requests each

The target (issue 14) is under 100 ms for each request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from typing import Any, Awaitable, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import httpx  # noqa: E402

from cloaca import DefaultRunner  # noqa: E402
from cloaca.dashboard import create_app  # noqa: E402
from cloaca._store import store_for_url  # noqa: E402
from cloaca._store.base import ExecutionRecord
from cloaca._store.base import TaskRecord
from _common import fmt, log, machine_line, median, percentile, perf, table  # noqa: E402

WORKFLOWS = ("bench_dash_orders", "bench_dash_billing", "bench_dash_rare")
TARGET_MS = 100.0
BATCH = 2000

# The indexes `--with-indexes` adds (what a paging index for list_executions looks like).
INDEXES = (
    "CREATE INDEX IF NOT EXISTS bench_ix_wf_time ON workflow_executions (workflow_name, started_at)",
    "CREATE INDEX IF NOT EXISTS bench_ix_status_time ON workflow_executions (status, started_at)",
    "CREATE INDEX IF NOT EXISTS bench_ix_wf_status ON workflow_executions "
    "(workflow_name, status, started_at)",
)


def _run(i: int, now: float) -> tuple[ExecutionRecord, list[TaskRecord], str]:
    """The i-th run: its record, its task rows and its status."""
    workflow = WORKFLOWS[0] if i % 10 < 6 else WORKFLOWS[1] if i % 100 else WORKFLOWS[2]
    status = "Failed" if i % 25 == 3 or i % 25 == 11 else "Running" if i % 50 == 7 else "Completed"
    started = now - (100_000 - i) * 2.0
    ended = None if status == "Running" else started + 1.5
    run_id = str(uuid.uuid4())
    context = json.dumps({"order": i, "region": "eu-west"})
    record = ExecutionRecord(
        id=run_id, workflow_name=workflow, workflow_version="bench", status=status,
        input_context=context, started_at=started, final_context=None if ended is None else context,
        error_message="1 task(s) failed" if status == "Failed" else None, completed_at=ended,
    )
    task_status = {"Completed": "Completed", "Failed": "Failed", "Running": "Running"}[status]
    tasks = [TaskRecord(run_id, f"public::embedded::{workflow}::step", task_status, 1,
                        started_at=started, completed_at=ended)]
    return record, tasks, status


async def fill(url: str, runs: int) -> None:
    """Write `runs` runs through the store, `BATCH` concurrent inserts at a time."""
    store = store_for_url(url)
    await store.open()
    now = time.time()
    try:
        for start in range(0, runs, BATCH):
            made = [_run(i, now) for i in range(start, min(start + BATCH, runs))]
            await asyncio.gather(*(
                store.create_execution(record, tasks, "bench-other-runner", now + 86_400)
                for record, tasks, _ in made
            ))
            log(f"  {min(start + BATCH, runs):,} runs written")
    finally:
        await store.close()


async def timed(call: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float]:
    """(median, p95) in ms of `repeat` calls, after one warm-up call."""
    await call()
    samples = []
    for _ in range(repeat):
        t0 = perf()
        await call()
        samples.append((perf() - t0) * 1000.0)
    return median(samples), percentile(samples, 95)


async def measure(url: str, runs: int, repeat: int) -> list[list[str]]:
    deep = max(runs // 50 // 2, 1)  # the middle page of 50 runs
    cases = [
        ("page 1", {}, None, None, 0),
        (f"deep page {deep:,}", {"page": deep}, None, None, (deep - 1) * 50),
        ("status=Failed", {"status": "Failed"}, None, "Failed", 0),
        ("workflow (1 % of runs)", {"workflow": WORKFLOWS[2]}, WORKFLOWS[2], None, 0),
        ("workflow + status, page 20", {"workflow": WORKFLOWS[0], "status": "Failed", "page": 20},
         WORKFLOWS[0], "Failed", 950),
    ]
    rows: list[list[str]] = []
    async with DefaultRunner(url) as runner:
        app = create_app(runner)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            async def get(path: str, params: dict[str, Any]) -> None:
                response = await client.get(path, params=params)
                assert response.status_code == 200, (path, params, response.status_code)

            static_ms, _ = await timed(lambda: get("/static/dashboard.css", {}), repeat)
            for label, params, workflow, status, offset in cases:
                data_ms, _ = await timed(lambda: _data(runner, workflow, status, offset), repeat)
                page_ms, page_p95 = await timed(lambda: get("/", params), repeat)
                api_params = {k: v for k, v in params.items() if k != "page"}
                api_params.update(limit=50, offset=offset)
                api_ms, api_p95 = await timed(lambda: get("/api/runs", api_params), repeat)
                worst = max(page_p95, api_p95)
                rows.append([
                    label, fmt(page_ms), fmt(page_p95), fmt(api_ms), fmt(api_p95), fmt(data_ms),
                    fmt(static_ms), "yes" if worst < TARGET_MS else "**no**",
                ])
                log(f"  {label}: page {page_ms:.1f} ms, api {api_ms:.1f} ms, data {data_ms:.1f} ms")
    return rows


async def _data(runner: DefaultRunner, workflow: Any, status: Any, offset: int) -> None:
    await runner.acount_executions(workflow)
    await runner.alist_executions(workflow, status, 50, offset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="20,000 runs, 10 requests each")
    parser.add_argument("--with-indexes", action="store_true",
                        help="add indexes on (workflow, time), (status, time), (workflow, status, time)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.repeat = min(args.runs, 20_000), min(args.repeat, 10)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dashboard.db")
        url = f"sqlite:///{path}"
        log(f"writing {args.runs:,} runs to {path}")
        t0 = perf()
        asyncio.run(fill(url, args.runs))
        fill_s = perf() - t0
        if args.with_indexes:
            with sqlite3.connect(path) as conn:
                for statement in INDEXES:
                    conn.execute(statement)
                conn.execute("ANALYZE")
        rows = asyncio.run(measure(url, args.runs, args.repeat))
    indexes = "with the extra indexes of `--with-indexes`" if args.with_indexes else \
        "with the store's own indexes only"
    print(f"## Dashboard: runs page and api/runs over {args.runs:,} runs (SQLite, {indexes})\n")
    print(f"{machine_line()}. Runs written in {fill_s:.1f} s. Median and p95 of {args.repeat} "
          "requests, ms; `data` = the runner's count + list calls the page makes; `static` = the "
          "CSS file through the same app.\n")
    print(table(["request", "page", "page p95", "api/runs", "api p95", "data", "static",
                 f"p95 < {TARGET_MS:g} ms"], rows))


if __name__ == "__main__":
    main()
