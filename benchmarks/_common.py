"""Helpers shared by the benchmark scripts: timing, statistics, machine facts, markdown."""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import sys
import time
from typing import Any, Iterable, Optional, Sequence

perf = time.perf_counter


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank, of `values`."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(round(q / 100.0 * len(ordered) + 0.5))))
    return ordered[rank - 1]


def rss_mib() -> float:
    """Resident set size of this process in MiB (VmRSS of /proc/self/status)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts() -> dict[str, str]:
    try:
        from importlib.metadata import version

        aiosqlite_version = version("aiosqlite")
        anyio_version = version("anyio")
    except Exception:  # pragma: no cover - only in a broken environment
        aiosqlite_version = anyio_version = "?"
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu_model(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "aiosqlite": aiosqlite_version,
        "anyio": anyio_version,
        "os": f"{platform.system()} {platform.release()}",
    }


def machine_line() -> str:
    f = machine_facts()
    return (
        f"{f['cores']} cores ({f['cpu']}), {f['python']}, SQLite {f['sqlite']}, "
        f"aiosqlite {f['aiosqlite']}, anyio {f['anyio']}, {f['os']}"
    )


def fmt(value: Optional[float], digits: int = 3) -> str:
    """A number with `digits` significant figures, thousands separated; '—' for None/NaN."""
    if value is None or value != value:
        return "—"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10 ** digits:
        return f"{value:,.0f}"
    decimals = max(0, digits - 1 - int(_floor_log10(magnitude)))
    return f"{value:,.{decimals}f}"


def _floor_log10(x: float) -> int:
    import math

    return math.floor(math.log10(x))


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def log(message: str) -> None:
    """Progress on stderr (stdout carries the markdown)."""
    print(message, file=sys.stderr, flush=True)
