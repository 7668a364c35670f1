"""Run every benchmark and write benchmarks/RESULTS.md.

    python benchmarks/run_all.py [--quick] [--peers-python PATH] [--skip NAME,...]
                                 [--baseline-checkout PATH]

Runs, each as a subprocess with this interpreter (each prints markdown): bench_core.py,
baselines.py, peers.py (DBOS and Prefect, from their venvs made by setup_peers.py, or
--peers-python / CLOACA_PEERS_PYTHON when given; skipped cleanly when not installed) and,
when present, bench_triggers.py, bench_fastapi.py, bench_postgres.py, bench_inflight.py,
bound_without_writes.py, bench_history.py, bench_reactors.py, bench_dashboard.py, bench_sharing.py and, given
--baseline-checkout, count_instructions.py. RESULTS.md gets the date, the
machine, a summary of the targets, and every script's output.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import fmt, machine_facts, table  # noqa: E402

SCRIPTS = ("bench_core", "baselines", "peers", "bench_triggers", "bench_fastapi", "bench_postgres",
           "bench_inflight", "bench_inflight_postgres", "bound_without_writes", "bench_history", "bench_reactors",
           "bench_dashboard", "bench_sharing", "count_instructions")
OPTIONAL = {
    "bench_triggers", "bench_fastapi", "bench_postgres", "bench_inflight", "bench_inflight_postgres",
    "bound_without_writes", "bench_history", "bench_reactors", "bench_dashboard", "bench_sharing", "count_instructions",
}
VARIANTS = {"bench_inflight_postgres": ("bench_inflight", ["--store", "postgres"])}
"""Entries of SCRIPTS that run another script with arguments of their own."""
NEEDS_POSTGRES = {"bench_postgres", "bench_inflight_postgres"}


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


def _nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 0


def _run(name: str, args: list[str], timeout: float) -> tuple[str, float, str]:
    """(markdown, seconds, problem) of one script; its stderr streams through."""
    cmd = [sys.executable, os.path.join(HERE, name + ".py"), *args]
    print(f"== {' '.join(cmd)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=HERE, stdout=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return out, time.perf_counter() - t0, f"timed out after {timeout:.0f} s"
    problem = "" if proc.returncode == 0 else f"exited with status {proc.returncode}"
    return proc.stdout, time.perf_counter() - t0, problem


def _accepts_quick(name: str) -> bool:
    try:
        with open(os.path.join(HERE, name + ".py")) as source:
            return "--quick" in source.read()
    except OSError:
        return False


def _section(name: str, output: str, problem: str) -> str:
    """A script's output as a markdown section (plain-text output goes in a code block)."""
    text = output.strip("\n")
    lines = text.splitlines()
    looks_markdown = any(l.startswith(("#", "|")) for l in lines)
    parts = []
    if not text.startswith("#"):
        parts.append(f"## {name}.py\n")
    parts.append(text if looks_markdown or not text else f"```\n{text}\n```")
    if problem:
        parts.append(f"\n**{name}.py {problem}** (above is what it printed before that; its stderr "
                     "went to the terminal).")
    return "\n".join(parts) + "\n"


def _summary(core: dict) -> str:
    rows = []
    for r in core.get("rows", []):
        grouped = r["baselines"].get("grouped")
        ratio = r["cost_vs_grouped"]
        rows.append([
            r["workload"], r["unit"], r["db"], f"**{fmt(r['cloaca'])}**", fmt(grouped),
            "—" if ratio is None else f"{ratio:.2f}×", r["target"], r["met"],
        ])
    out = [table(["workload", "unit", "database", "cloaca (median)", "raw aiosqlite grouped (same run)",
                  "cost ratio", "target", "met"], rows)]
    memory = core.get("memory")
    if memory:
        out.append(f"\n(6) memory over {memory['runs']:,} runs: {memory['verdict']}.")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions everywhere")
    parser.add_argument("--peers-python", default=os.environ.get("CLOACA_PEERS_PYTHON", ""),
                        help="one interpreter with dbos/prefect installed (default: the peers' "
                             "own venvs made by setup_peers.py)")
    parser.add_argument("--skip", default="", help=f"comma-separated subset of {','.join(SCRIPTS)}")
    parser.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"))
    parser.add_argument("--baseline-checkout", default="",
                        help="another checkout (with its .venv): count_instructions.py compares "
                             "instructions per unit with it (skipped without)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    quick = ["--quick"] if args.quick else []
    timeout = 1800.0 if args.quick else 5400.0
    started = datetime.datetime.now(datetime.timezone.utc)
    commit_at_start = _git("rev-parse", "--short", "HEAD")
    dirty_at_start = bool(_git("status", "--porcelain", "--", "../cloaca"))
    sections: list[str] = []
    timings: list[list[str]] = []
    core_summary: dict = {}
    for name in SCRIPTS:
        script, extra = VARIANTS.get(name, (name, []))
        path = os.path.join(HERE, script + ".py")
        if name in skip:
            timings.append([name, "skipped (--skip)", ""])
            continue
        if not os.path.exists(path):
            if name in OPTIONAL:
                timings.append([name, "not present", ""])
                continue
        if name in NEEDS_POSTGRES and not os.environ.get("CLOACA_TEST_POSTGRES_URL"):
            timings.append([name, "skipped: CLOACA_TEST_POSTGRES_URL is not set", ""])
            continue
        if name == "count_instructions" and not args.baseline_checkout:
            timings.append([name, "skipped: no --baseline-checkout", ""])
            continue
        script_args: list[str] = []
        json_path = ""
        if name == "bench_core":
            json_path = tempfile.mktemp(prefix="cloaca-core-", suffix=".json")
            script_args = quick + ["--json", json_path]
        elif name == "peers":
            script_args = quick + (["--python", args.peers_python] if args.peers_python else [])
        elif name == "count_instructions":
            script_args = ["--baseline", args.baseline_checkout]
        elif name in OPTIONAL:
            script_args = (quick if _accepts_quick(script) else []) + extra
        else:
            script_args = quick
        output, seconds, problem = _run(script, script_args, timeout)
        if json_path and os.path.exists(json_path):
            with open(json_path) as data:
                core_summary = json.load(data)
            os.unlink(json_path)
        sections.append(_section(name, output, problem))
        timings.append([name, problem or "ok", f"{seconds:.0f} s"])

    facts = machine_facts()
    commit = commit_at_start or "unknown"
    dirty = " with uncommitted changes under cloaca/" if dirty_at_start else ""
    commit_at_end = _git("rev-parse", "--short", "HEAD")
    if commit_at_end and commit_at_end != commit_at_start:
        dirty += f" (HEAD moved to {commit_at_end} during the run)"
    doc = [
        "# cloaca benchmark results\n",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        f"- Command: `python benchmarks/run_all.py{' --quick' if args.quick else ''}`"
        f" ({'quick: fewer repetitions, 20,000 runs for memory' if args.quick else 'full'})",
        f"- Machine: {_nproc()} cores (nproc), CPU {facts['cpu']}, {facts['os']}",
        f"- Python {facts['python']}, SQLite {facts['sqlite']}, aiosqlite {facts['aiosqlite']}, "
        f"anyio {facts['anyio']}",
        f"- cloaca commit at the start: {commit}{dirty}",
        "- The machine is shared and noisy: compare figures within one run (every baseline is "
        "measured in the same run, interleaved with the engine), not across runs.\n",
        "## Summary: cloaca against the targets\n",
        "Cost ratio = cloaca's time per unit of work ÷ that of raw aiosqlite doing the minimal "
        "writes with group commit (the physical limit of a durable engine on SQLite).\n",
        _summary(core_summary) if core_summary else "(bench_core.py did not report.)",
        "",
        table(["script", "status", "took"], timings),
        "",
    ]
    with open(args.output, "w") as out:
        out.write("\n".join(doc) + "\n" + "\n".join(sections))
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
