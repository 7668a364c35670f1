"""Peers: DBOS (SQLite system database) and Prefect 3 (local ephemeral API, telemetry off)
running cloaca's workloads (1)-(4). Optional extras: a peer that is not installed is skipped.

Prefect's server on SQLite answers concurrent flow runs with HTTP 503 ("database is locked":
creating a flow run reads, then writes, in a deferred transaction), which its client retries
after 2, 4, 8, ... s. As a Prefect user would, the runs raise PREFECT_CLIENT_MAX_RETRIES (5 by
default, after which the run fails), workload (3) is measured both with 8 runs in flight and one
at a time, and each row says how many requests the client retried.

Install the pinned peers, each in a venv of its own, with one command:

    python benchmarks/setup_peers.py

This script (and run_all.py) then finds them there. `--python PATH` (or CLOACA_PEERS_PYTHON)
runs both peers with one other interpreter instead. Each peer runs in its own subprocess; start-up (import, set-up and, for
Prefect, the ephemeral API server) is timed separately from the workloads. In the same
subprocess the grouped raw-aiosqlite baseline of baselines.py is measured for the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Awaitable, Callable, Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = ("dbos", "prefect")
MODULES = {"dbos": "dbos", "prefect": "prefect"}
PINS = {"dbos": "dbos==3.4.0", "prefect": "prefect==3.9.1"}
"""The versions measured (setup_peers.py installs them)."""


def peers_dir() -> str:
    """Where setup_peers.py puts the peers' venvs."""
    default = os.path.join(os.path.expanduser("~"), ".cache", "cloaca", "peers")
    return os.environ.get("CLOACA_PEERS_DIR") or default


def peer_python(peer: str, directory: str = "") -> str:
    """The interpreter of `peer`'s own venv (which may not exist yet)."""
    return os.path.join(directory or peers_dir(), peer, "bin", "python")


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


async def _atimed(fn: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return time.perf_counter() - t0


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(0.99 * len(ordered) + 0.5)) - 1))]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- DBOS
def run_dbos(quick: bool, tmp: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    from dbos import DBOS  # noqa: WPS433 - optional peer

    DBOS(config={
        "name": "cloaca-bench",
        "system_database_url": f"sqlite:///{os.path.join(tmp, 'dbos.sqlite')}",
        "log_level": "WARNING",
    })

    @DBOS.step()
    async def anoop() -> None:
        return None

    @DBOS.step()
    def snoop() -> None:
        return None

    @DBOS.workflow()
    async def chain_async() -> None:
        for _ in range(100):
            await anoop()

    @DBOS.workflow()
    def chain_sync() -> None:
        for _ in range(100):
            snoop()

    @DBOS.workflow()
    async def fanout_async() -> None:
        await anoop()
        await asyncio.gather(*(anoop() for _ in range(1000)))
        await anoop()

    @DBOS.workflow()
    async def single_async() -> None:
        await anoop()

    @DBOS.workflow()
    def single_sync() -> None:
        snoop()

    DBOS.launch()
    startup = time.perf_counter() - t0
    _log(f"peers/dbos: started in {startup:.2f}s")
    reps = 3 if quick else 7
    n_runs = 1000
    trips = 100 if quick else 500
    res: dict[str, Any] = {"startup_s": startup, "notes": {}}

    async def async_part() -> None:
        res["chain_async"] = await _reps("chain_async", reps, lambda: chain_async(), lambda s: s * 1000 / 100)
        _log(f"peers/dbos: chain async {res['chain_async']} ms/task")
        res["fanout_async"] = await _reps("fanout_async", reps, lambda: fanout_async(), lambda s: 1002 / s)
        _log(f"peers/dbos: fan-out async {res['fanout_async']} tasks/s")

        async def many() -> None:
            await asyncio.gather(*(single_async() for _ in range(n_runs)))

        res["runs"] = await _reps("runs", reps, many, lambda s: n_runs / s)
        res["notes"]["runs"] = f"{n_runs:,} runs together"
        _log(f"peers/dbos: runs {res['runs']} runs/s")

    asyncio.run(async_part())
    res["chain_sync"] = _sync_reps("chain_sync", reps, chain_sync, lambda s: s * 1000 / 100)
    res["notes"]["fanout_sync"] = "no in-workflow parallelism for sync steps"
    res["rt_median"], res["rt_p99"] = _round_trip("rt", single_sync, 10, trips)
    res["notes"]["rt"] = f"sync workflow called from sync code, {trips} samples"
    DBOS.destroy()
    return res


# ------------------------------------------------------------------------------- Prefect
PREFECT_IN_FLIGHT = 8
PREFECT_MAX_RETRIES = 10
"""Client retries of a 503 (Prefect's default: 5, i.e. a request fails after ~1 min of 503s)."""


class _RetryCounter(logging.Filter):
    """Counts the requests Prefect's client retries; lets through only warnings and above."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.DEBUG and "retryable" in str(record.msg):
            self.count += 1
        return record.levelno >= logging.WARNING


RETRIES: _RetryCounter | None = None
"""Installed by run_prefect; _reps and friends then record each workload's retries in RETRIED."""


def _count_retries() -> None:
    """Installs a counter of the retries logged (at debug level) by the logger `prefect.client`."""
    global RETRIES
    RETRIES = _RetryCounter()
    client_logger = logging.getLogger("prefect.client")
    client_logger.setLevel(logging.DEBUG)
    client_logger.addFilter(RETRIES)


def run_prefect(quick: bool, tmp: str) -> dict[str, Any]:
    os.environ.update({
        "PREFECT_HOME": tmp,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{os.path.join(tmp, 'prefect.db')}",
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        "PREFECT_CLIENT_MAX_RETRIES": str(PREFECT_MAX_RETRIES),
    })
    os.environ.pop("PREFECT_API_URL", None)
    t0 = time.perf_counter()
    from prefect import flow, task  # noqa: WPS433 - optional peer

    @task
    async def anoop() -> None:
        return None

    @task
    def snoop() -> None:
        return None

    @task
    def snoop_item(item: int) -> None:
        return None

    @flow
    async def chain_async() -> None:
        for _ in range(100):
            await anoop()

    @flow
    def chain_sync() -> None:
        for _ in range(100):
            snoop()

    @flow
    async def fanout_async() -> None:
        await anoop()
        await asyncio.gather(*(anoop() for _ in range(1000)))
        await anoop()

    @flow
    def fanout_sync() -> None:
        snoop()
        snoop_item.map(range(1000)).wait()
        snoop()

    @flow
    async def single_async() -> None:
        await anoop()

    @flow
    def single_sync() -> None:
        snoop()

    @flow
    def hello() -> None:
        return None

    hello()  # the first flow run starts the ephemeral API server
    _count_retries()
    startup = time.perf_counter() - t0
    _log(f"peers/prefect: started in {startup:.2f}s")
    reps = 3 if quick else 5
    n_runs = 40 if quick else 100
    trips = 20 if quick else 50
    res: dict[str, Any] = {"startup_s": startup, "notes": {}}

    async def async_part() -> None:
        res["chain_async"] = await _reps("chain_async", reps, lambda: chain_async(), lambda s: s * 1000 / 100)
        _log(f"peers/prefect: chain async {res['chain_async']} ms/task")
        res["fanout_async"] = await _reps("fanout_async", reps, lambda: fanout_async(), lambda s: 1002 / s)
        _log(f"peers/prefect: fan-out async {res['fanout_async']} tasks/s")
        for key, in_flight in (("runs_serial", 1), ("runs", PREFECT_IN_FLIGHT)):
            res[key] = await _reps(key, reps, lambda n=in_flight: _bounded(single_async, n_runs, n),
                                   lambda s: n_runs / s)
            bound = "" if in_flight == 1 else f", at most {in_flight} in flight"
            res["notes"][key] = f"{n_runs} runs{bound}"
            _log(f"peers/prefect: {key}: {res[key]} runs/s ({RETRIED[key]} requests retried)")

    asyncio.run(async_part())
    res["chain_sync"] = _sync_reps("chain_sync", reps, chain_sync, lambda s: s * 1000 / 100)
    res["fanout_sync"] = _sync_reps("fanout_sync", reps, fanout_sync, lambda s: 1002 / s)
    res["notes"]["fanout_sync"] = "task.map on the default thread-pool task runner"
    res["rt_median"], res["rt_p99"] = _round_trip("rt", single_sync, 3, trips)
    res["notes"]["rt"] = f"sync flow called from sync code, {trips} samples"
    return res


# ------------------------------------------------------------------------------- shared
async def _bounded(flow_fn: Callable[[], Awaitable[Any]], runs: int, in_flight: int) -> None:
    """`runs` calls of `flow_fn` started together, at most `in_flight` of them at a time."""
    gate = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with gate:
            await flow_fn()

    await asyncio.gather(*(one() for _ in range(runs)))


RANGES: dict[str, tuple[float, float, float]] = {}  # workload -> (first run, min, max)
RETRIED: dict[str, int] = {}  # workload -> requests the peer's client retried (when counted)


@contextlib.contextmanager
def _retries_of(key: str) -> Iterator[None]:
    """Records in RETRIED[key] the requests retried in the block, when RETRIES is installed."""
    before = RETRIES.count if RETRIES else 0
    try:
        yield
    finally:
        if RETRIES:
            RETRIED[key] = RETRIES.count - before


async def _reps(key: str, reps: int, fn: Callable[[], Awaitable[Any]],
                convert: Callable[[float], float]) -> Any:
    """Median of `reps` timed calls after a warm-up (converted); an error text if it failed."""
    try:
        with _retries_of(key):
            first = convert(await _atimed(fn))  # warm-up
            values = [convert(await _atimed(fn)) for _ in range(reps)]
    except Exception as exc:
        _log(f"peers: {key} failed: {type(exc).__name__}: {exc}")
        return f"failed: {type(exc).__name__}"
    RANGES[key] = (first, min(values), max(values))
    return _median(values)


def _sync_reps(key: str, reps: int, fn: Callable[[], Any], convert: Callable[[float], float]) -> Any:
    try:
        with _retries_of(key):
            first = convert(_timed(fn))  # warm-up
            values = [convert(_timed(fn)) for _ in range(reps)]
    except Exception as exc:
        _log(f"peers: {key} failed: {type(exc).__name__}: {exc}")
        return f"failed: {type(exc).__name__}"
    RANGES[key] = (first, min(values), max(values))
    return _median(values)


def _round_trip(key: str, fn: Callable[[], Any], warm: int, samples: int) -> tuple[Any, Any]:
    try:
        with _retries_of(key):
            for _ in range(warm):
                fn()
            lat = [_timed(fn) * 1000 for _ in range(samples)]
    except Exception as exc:
        _log(f"peers: round trip failed: {type(exc).__name__}: {exc}")
        return f"failed: {type(exc).__name__}", None
    return _median(lat), _p99(lat)


def grouped_baseline(quick: bool) -> dict[str, float]:
    """The grouped raw-aiosqlite baseline of baselines.py, in this (the peer's) process."""
    sys.path.insert(0, HERE)
    import baselines as bl  # noqa: WPS433

    reps = 3 if quick else 7
    out: dict[str, float] = {}

    async def measure() -> None:
        async with bl.Database("file") as db:
            w = db.writer("grouped")
            out["chain_async"] = await _reps("base_chain_async", reps, lambda: bl.chain(w, False), lambda s: s / 100 * 1000)
            out["chain_sync"] = await _reps("base_chain_sync", reps, lambda: bl.chain(w, True), lambda s: s / 100 * 1000)
            out["fanout_async"] = await _reps("base_fanout_async", reps, lambda: bl.fanout(w, False), lambda s: 1002 / s)
            out["fanout_sync"] = await _reps("base_fanout_sync", reps, lambda: bl.fanout(w, True), lambda s: 1002 / s)
            out["runs"] = await _reps("base_runs", reps, lambda: bl.runs(w, 1000), lambda s: 1000 / s)

    asyncio.run(measure())
    with bl.RoundTrip("grouped", "file") as rt:
        for _ in range(20):
            rt.once()
        lat = [rt.once() * 1000 for _ in range(300)]
    out["rt_median"], out["rt_p99"] = _median(lat), _p99(lat)
    return out


def child(peer: str, quick: bool) -> None:
    tmp = tempfile.mkdtemp(prefix=f"cloaca-peer-{peer}-")
    try:
        from importlib.metadata import version

        result = {"peer": peer, "version": version(peer)}
        result.update(run_dbos(quick, tmp) if peer == "dbos" else run_prefect(quick, tmp))
        result["ranges"] = {k: v for k, v in RANGES.items() if not k.startswith("base_")}
        if RETRIES:
            result["retried"] = {k: v for k, v in RETRIED.items() if not k.startswith("base_")}
        try:
            result["baseline"] = grouped_baseline(quick)
        except Exception as exc:  # aiosqlite missing in the peer's venv, say
            result["baseline_error"] = f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("RESULT " + json.dumps(result), flush=True)


# ------------------------------------------------------------------------------- report
ROWS = (
    ("chain_async", "(1) chain of 100, async no-op", "ms/task", False),
    ("chain_sync", "(1) chain of 100, sync no-op", "ms/task", False),
    ("fanout_async", "(2) fan-out 1→1,000→1, async no-op", "tasks/s", True),
    ("fanout_sync", "(2) fan-out 1→1,000→1, sync no-op", "tasks/s", True),
    ("runs", "(3) single-task runs started together", "runs/s", True),
    ("runs_serial", "(3) single-task runs, one at a time", "runs/s", True),
    ("rt_median", "(4) one-task round trip from sync code, median", "ms", False),
    ("rt_p99", "(4) one-task round trip from sync code, p99", "ms", False),
)
NOTE_KEYS = {"rt_median": "rt", "rt_p99": "rt"}
BASE_KEYS = {"runs_serial": "runs"}
OPTIONAL_ROWS = {"runs_serial"}  # shown only for the peers that measure them


def render(results: dict[str, dict[str, Any]], skipped: dict[str, str]) -> str:
    sys.path.insert(0, HERE)
    from _common import fmt, table  # noqa: WPS433

    out = ["## Peers: DBOS and Prefect 3 on the same workloads\n"]
    out.append("Each peer in its own process; the grouped raw-aiosqlite baseline measured in that same "
               "process. Cost ratio = the peer's time per unit of work ÷ the baseline's.\n")
    for peer in PEERS:
        if peer in skipped:
            out.append(f"- **{peer}**: {skipped[peer]}")
    if skipped:
        out.append("")
    for peer, res in results.items():
        base = res.get("baseline", {})
        retried = res.get("retried")
        out.append(f"### {peer} {res['version']}\n")
        where = ("SQLite system database (a file in a temp dir)" if peer == "dbos" else
                 "local ephemeral API server (its own subprocess on 127.0.0.1) over a SQLite file; "
                 f"telemetry off; PREFECT_CLIENT_MAX_RETRIES={PREFECT_MAX_RETRIES} (default 5)")
        out.append(f"On: {where}. Start-up (import, set-up, first run ready): "
                   f"**{res['startup_s']:.2f} s**, not included below.\n")
        rows = []
        ranges = res.get("ranges", {})
        for key, label, unit, higher in ROWS:
            if key in OPTIONAL_ROWS and key not in res:
                continue
            value = res.get(key)
            note = res["notes"].get(NOTE_KEYS.get(key, key), "")
            b = base.get(BASE_KEYS.get(key, key))
            ratio, spread, first = "—", "", ""
            if isinstance(value, (int, float)) and value and b:
                ratio = f"{(b / value if higher else value / b):,.1f}×"
            if key in ranges:
                warm, low, high = ranges[key]
                spread, first = f"{fmt(low)} – {fmt(high)}", fmt(warm)
            shown = ("n/a" if value is None else value if isinstance(value, str) else f"**{fmt(value)}**")
            row = [label + (f" ({note})" if note else ""), unit, shown, spread, first, fmt(b), ratio]
            if retried is not None:
                row.append(str(retried.get(NOTE_KEYS.get(key, key), "")))
            rows.append(row)
        headers = ["workload", "unit", f"{peer} (median)", "range of repetitions",
                   "first (warm-up) run", "aiosqlite grouped (same process)", "cost ratio"]
        if retried is not None:
            headers.append("requests its client retried (warm-up included)")
        out.append(table(headers, rows))
        if "baseline_error" in res:
            out.append(f"\nBaseline not measured: {res['baseline_error']}")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--python", default=os.environ.get("CLOACA_PEERS_PYTHON", ""),
                        help="one interpreter for both peers (default: each peer's venv made by "
                             "setup_peers.py, else this interpreter)")
    parser.add_argument("--peer", choices=PEERS, help="(internal) run one peer in this process")
    parser.add_argument("--only", default="", help="comma-separated subset of dbos,prefect")
    args = parser.parse_args()
    if args.peer:
        child(args.peer, args.quick)
        return
    wanted = [p for p in PEERS if not args.only or p in args.only.split(",")]
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for peer in wanted:
        python = args.python or peer_python(peer)
        if not os.path.exists(python):
            python = sys.executable
        probe = subprocess.run([python, "-c", f"import {MODULES[peer]}"], capture_output=True)
        if probe.returncode != 0:
            skipped[peer] = (f"not installed (in {python}; `python benchmarks/setup_peers.py` "
                             f"installs {PINS[peer]} in a venv of its own)")
            _log(f"peers/{peer}: not installed")
            continue
        cmd = [python, os.path.abspath(__file__), "--peer", peer] + (["--quick"] if args.quick else [])
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=HERE,
                                  timeout=1500 if args.quick else 3600)
        except subprocess.TimeoutExpired:
            skipped[peer] = "timed out"
            continue
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            skipped[peer] = f"failed (exit {proc.returncode}; see stderr)"
            continue
        results[peer] = json.loads(lines[-1][len("RESULT "):])
    print(render(results, skipped))


if __name__ == "__main__":
    main()
