"""Where the time goes per task: cProfile of workloads (1) async chain and (3) 1,000 runs.

    python benchmarks/profile_core.py [--workload chain|runs|fanout] [--repeat N] [--top N]
    python benchmarks/profile_core.py --plain chain   # no cProfile: for `py-spy record -- ...`

Prints markdown: wall time per task without and with the profiler, the event-loop thread's
own time grouped by module, and the top functions by own time and by cumulative time.
cProfile sees only the loop thread; the SQLite work done in aiosqlite's thread shows up as
waiting (select/epoll) here — run under py-spy (`--plain`, `py-spy record --threads
--format raw`) to see both threads.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import threading
from collections import defaultdict
from typing import Any, Awaitable, Callable

import bench_core as core
from _common import fmt, machine_line, perf, table

import cloaca

WORKLOADS = {
    "chain": ("100-task chain of async no-op tasks", 100),
    "runs": ("1,000 single-task runs together (aexecute)", 1000),
    "fanout": ("fan-out 1→1,000→1 of async no-op tasks", 1002),
}


def _one(runner: cloaca.DefaultRunner, name: str) -> Callable[[], Awaitable[float]]:
    if name == "chain":
        return lambda: core.engine_chain(runner, "async")
    if name == "fanout":
        return lambda: core.engine_fanout(runner, "async")
    return lambda: core.engine_runs(runner)


def _module(filename: str) -> str:
    """A short bucket name for a profiled function's file: `cloaca/…`, `asyncio/…`, `json`…"""
    if filename in ("~", "{built-in}"):
        return "builtins (C)"
    parts = filename.replace("\\", "/").split("/")
    if "cloaca" in parts and "benchmarks" not in parts:
        i = len(parts) - 1 - parts[::-1].index("cloaca")
        return "cloaca/" + "/".join(parts[i + 1:])
    if len(parts) >= 2 and parts[-2] in ("asyncio", "json", "anyio", "aiosqlite", "concurrent",
                                         "sqlite3", "_backends", "futures", "streams"):
        package = parts[-2] if parts[-2] not in ("_backends", "futures", "streams") else parts[-3]
        return f"{package}/{parts[-1]}"
    return parts[-1]


def _label(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    return f"{_module(filename)}:{line} {name}"


def _thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each thread of this process, by thread name."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as comm:
                name = comm.read().strip()
            with open(f"/proc/self/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        key = f"{name} ({tid})"
        out[key] = (int(fields[11]) + int(fields[12])) / ticks
    return out


async def profile(name: str, url: str, repeat: int, top: int) -> str:
    title, tasks_per = WORKLOADS[name]
    config = cloaca.DefaultRunnerConfig(max_concurrent_tasks=core.ASYNC_CONCURRENCY)
    out = [f"### {title}\n"]
    async with cloaca.DefaultRunner.with_config(url, config) as runner:
        one = _one(runner, name)
        for _ in range(3):
            await one()
        plain = [await one() for _ in range(repeat)]
        # Per-thread CPU over >= 3 s of unprofiled repetitions (/proc ticks are 10 ms).
        cpu0, t_cpu, cpu_units = _thread_cpu(), perf(), 0
        while perf() - t_cpu < 3.0:
            await one()
            cpu_units += tasks_per
        cpu_wall = perf() - t_cpu
        cpu1 = _thread_cpu()
        profiler = cProfile.Profile()
        t0 = perf()
        profiler.enable()
        for _ in range(repeat):
            await one()
        profiler.disable()
        profiled_wall = perf() - t0
    tasks = tasks_per * repeat
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total_own = sum(v[2] for v in raw.values())
    per_task_plain = sum(plain) / tasks * 1e6
    out.append(
        f"{repeat} repetitions = {tasks:,} tasks. Without profiler: **{fmt(per_task_plain)} µs per task** "
        f"(wall). Under cProfile: {fmt(profiled_wall / tasks * 1e6)} µs per task wall, "
        f"{fmt(total_own / tasks * 1e6)} µs of profiled loop-thread time per task.\n"
    )
    main_tid = str(threading.get_native_id())
    cpu_rows = []
    for key in sorted(cpu1, key=lambda k: -(cpu1[k] - cpu0.get(k, 0.0))):
        used = cpu1[key] - cpu0.get(key, 0.0)
        if used <= 0:
            continue
        label = ("event loop (main thread)" if key.endswith(f"({main_tid})") else
                 "SQLite thread (aiosqlite's connection thread)" if len(cpu_rows) == 1 else
                 f"other thread {key}")
        cpu_rows.append([label, f"{used / cpu_wall:.0%}", fmt(used / cpu_units * 1e6)])
    out.append(f"CPU per thread over {cpu_wall:.1f} s of unprofiled repetitions ({cpu_units:,} tasks; "
               f"{fmt(cpu_wall / cpu_units * 1e6)} µs wall per task), from /proc/self/task:\n")
    out.append(table(["thread", "CPU share of wall time", "CPU µs per task"], cpu_rows))
    out.append("")
    idle = sum(v[2] for k, v in raw.items() if k[2] in ("<method 'poll' of 'select.epoll' objects>",
                                                          "<method 'select' of 'select.epoll' objects>"))
    by_module: dict[str, float] = defaultdict(float)
    for func, (_cc, _nc, tt, _ct, _callers) in raw.items():
        if func[2] in ("<method 'poll' of 'select.epoll' objects>",):
            by_module["(waiting in epoll: SQLite thread / idle)"] += tt
        else:
            module = _module(func[0])
            by_module[module.split("/")[0] if module.startswith(("asyncio", "json")) else module] += tt
    out.append("Own time of the loop thread by module (share of all profiled time; µs per task):\n")
    out.append(table(
        ["module", "share", "µs/task"],
        [[m, f"{t / total_own:.1%}", fmt(t / tasks * 1e6)]
         for m, t in sorted(by_module.items(), key=lambda kv: -kv[1])[:15]],
    ))
    out.append("")
    out.append(f"Top {top} functions by own time (tottime):\n")
    rows = sorted(raw.items(), key=lambda kv: -kv[1][2])[:top]
    out.append(table(
        ["function", "calls/task", "own µs/task", "own share", "cumulative share"],
        [[f"`{_label(f)}`", fmt(v[1] / tasks, 2), fmt(v[2] / tasks * 1e6), f"{v[2] / total_own:.1%}",
          f"{v[3] / total_own:.1%}"] for f, v in rows],
    ))
    out.append("")
    out.append(f"Top {top} cloaca functions by cumulative time:\n")
    mine = [(f, v) for f, v in raw.items() if "/cloaca/" in f[0].replace("\\", "/")
            and "/benchmarks/" not in f[0]]
    mine.sort(key=lambda kv: -kv[1][3])
    out.append(table(
        ["function", "calls/task", "cumulative µs/task", "cumulative share"],
        [[f"`{_label(f)}`", fmt(v[1] / tasks, 2), fmt(v[3] / tasks * 1e6), f"{v[3] / total_own:.1%}"]
         for f, v in mine[:top]],
    ))
    out.append(f"\n(epoll wait — the loop idle while aiosqlite's thread works — is "
               f"{idle / total_own:.1%} of profiled time.)\n")
    return "\n".join(out)


async def plain(name: str, url: str, seconds: float) -> None:
    config = cloaca.DefaultRunnerConfig(max_concurrent_tasks=core.ASYNC_CONCURRENCY)
    async with cloaca.DefaultRunner.with_config(url, config) as runner:
        one = _one(runner, name)
        end = perf() + seconds
        n = 0
        while perf() < end:
            await one()
            n += 1
    print(f"{name}: {n} repetitions", file=sys.stderr)


IDLE_LEAVES = ("EpollSelector.select (selectors.py", "_connection_worker_thread (aiosqlite/core.py:59)",
               "Thread.wait (threading.py", "_worker (concurrent/futures/thread.py")


def py_spy(name: str, seconds: float, rate: int, top: int) -> str:
    """Sample both threads with py-spy (a `--plain` child) and summarise per thread."""
    import collections
    import subprocess

    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(spy):
        return "py-spy is not installed (pip install py-spy)."
    raw = tempfile.mktemp(suffix=".txt")
    cmd = [spy, "record", "--threads", "--idle", "--format", "raw", "-r", str(rate), "-o", raw, "--",
           sys.executable, os.path.abspath(__file__), "--plain", name, "--seconds", str(seconds)]
    subprocess.run(cmd, check=True, capture_output=True)
    totals: collections.Counter[str] = collections.Counter()
    active: collections.Counter[str] = collections.Counter()
    leaves: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    with open(raw) as data:
        for line in data:
            stack, count = line.rstrip("\n").rsplit(" ", 1)
            frames = stack.split(";")
            thread = frames[0].split(": ", 1)[-1]
            if "_connection_worker" in thread:
                thread = "aiosqlite connection thread"
            elif any(f.startswith("BaseEventLoop.run_forever") for f in frames):
                thread = "event loop (MainThread)"  # only while the loop runs, not start-up
            else:
                continue  # start-up (imports, workflow registration), shutdown
            n = int(count)
            totals[thread] += n
            if frames[-1].startswith(IDLE_LEAVES):
                continue
            active[thread] += n
            leaves[thread][frames[-1]] += n
            for function in {f.rsplit(":", 1)[0] + ")" for f in frames[1:]}:
                if "cloaca/" in function or "(executor.py" in function:
                    inclusive[thread][function] += n
    os.unlink(raw)
    out = [f"### py-spy, {WORKLOADS[name][0]} ({seconds:g} s at {rate} Hz, both threads)\n"]
    wall = totals["event loop (MainThread)"] or max(totals.values())
    out.append(table(["thread", "busy share of wall time"],
                     [[t, f"{active[t] / wall:.0%}"] for t, _ in totals.most_common(2)]))
    for thread, _ in totals.most_common(2):
        out.append(f"\n{thread}: top leaf frames (share of wall time)\n")
        out.append(table(["frame", "share"], [[f"`{f}`", f"{n / wall:.1%}"]
                                              for f, n in leaves[thread].most_common(top)]))
        if inclusive[thread]:
            out.append(f"\n{thread}: cloaca frames, inclusive (share of wall time)\n")
            out.append(table(["frame", "share"], [[f"`{f}`", f"{n / wall:.1%}"]
                                                  for f, n in inclusive[thread].most_common(top)]))
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", default="chain,runs")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--plain", metavar="WORKLOAD", help="run WORKLOAD for --seconds without cProfile")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--py-spy", action="store_true", help="also sample both threads with py-spy")
    args = parser.parse_args()
    core.register_workflows()
    tmp = tempfile.mkdtemp(prefix="cloaca-profile-")
    url = "sqlite:///" + os.path.join(tmp, "profile.db")
    try:
        if args.plain:
            asyncio.run(plain(args.plain, url, args.seconds))
            return
        print("## cProfile of the engine (SQLite file, WAL)\n")
        print(f"Machine: {machine_line()}.\n")
        for name in args.workload.split(","):
            print(asyncio.run(profile(name, url, args.repeat, args.top)))
            if args.py_spy:
                print(py_spy(name, min(args.seconds, 8.0), 1000, 12))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
