"""bench_core.py of this checkout against another checkout (an earlier commit), side by side.

    git worktree add ../base <commit> && (cd ../base && python3 -m venv .venv &&
        .venv/bin/pip install -e '.[test]')
    python benchmarks/compare_commits.py --baseline ../base [--rounds 3] [--only chain,runs]

Each round runs `bench_core.py --quick --db file` once in each checkout (each with its own
venv), alternating which goes first, so drift on a noisy machine hits both alike. Every
workload is compared by its cost against the raw-aiosqlite grouped limit measured in the same
process (the figure that survives machine noise), as the median over the rounds; the last
column is this checkout's cost divided by the baseline's (< 1: this checkout is cheaper).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from _common import fmt, median, table

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_bench(checkout: str, only: str) -> list[dict[str, Any]]:
    python = os.path.join(checkout, ".venv", "bin", "python")
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [python, os.path.join(checkout, "benchmarks", "bench_core.py"), "--quick", "--db", "file",
             "--only", only, "--json", out.name],
            check=True, stdout=subprocess.DEVNULL, cwd=checkout,
        )
        with open(out.name) as handle:
            summary = json.load(handle)
    return [row for rows in summary.values() if isinstance(rows, list) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the other checkout (with its .venv)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="chain,fanout,runs,roundtrip")
    args = parser.parse_args()
    sides = {"this": HERE, "baseline": os.path.abspath(args.baseline)}
    costs: dict[tuple[str, str], dict[str, list[float]]] = {}
    for round_ in range(args.rounds):
        order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
        for side in order:
            print(f"round {round_ + 1}: {side}", file=sys.stderr, flush=True)
            for row in run_bench(sides[side], args.only):
                key = (row["workload"], row["unit"])
                figures = costs.setdefault(key, {"this": [], "baseline": [], "this raw": [], "baseline raw": []})
                if row.get("cost_vs_grouped") is not None:
                    figures[side].append(row["cost_vs_grouped"])
                figures[side + " raw"].append(row["cloaca"])
    rows = []
    for (workload, unit), figures in costs.items():
        if not figures["this"] or not figures["baseline"]:
            continue
        this, base = median(figures["this"]), median(figures["baseline"])
        rows.append([workload, unit, fmt(median(figures["baseline raw"])), fmt(median(figures["this raw"])),
                     f"{fmt(base)}×", f"{fmt(this)}×", fmt(this / base)])
    print(f"{args.rounds} rounds, medians; cost = cloaca ÷ the same run's grouped raw-aiosqlite limit\n")
    print(table(["workload", "unit", "baseline", "this", "baseline cost", "this cost",
                 "this ÷ baseline cost"], rows))


if __name__ == "__main__":
    main()
