"""What the chaos scenarios share: the mode (short by default, `CLOACA_CHAOS=long`), the
sizes of each mode, and where the figures of a run go.

The short mode is part of the default test run (a few seconds per scenario); the long one
is run by hand (`CLOACA_CHAOS=long pytest -m chaos -s tests/chaos`) and its figures are
recorded in docs/reliability.md. `CLOACA_CHAOS_REPORT=path` appends each scenario's
figures to `path` as one JSON object per line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

LONG = os.environ.get("CLOACA_CHAOS", "").lower() == "long"
SEED = int(os.environ.get("CLOACA_CHAOS_SEED", "18"))
POSTGRES_URL = os.environ.get("CLOACA_TEST_POSTGRES_URL")


@dataclass(frozen=True)
class KillPlan:
    """One multi-process kill scenario's sizes."""

    runs_per_process: int
    kills: int
    submit_pause: float
    """Seconds between two submissions of a process: spreads the runs over the kill window."""
    kill_gap: tuple[float, float]
    """Seconds between two kills (uniform in this range)."""
    restart_delay: tuple[float, float]
    lease_seconds: float


KILLS = KillPlan(200, 16, 0.3, (1.5, 3.5), (0.0, 1.0), 2.0) if LONG else \
    KillPlan(16, 3, 0.2, (0.8, 1.6), (0.0, 0.5), 2.0)

CUT_RUNS = 300 if LONG else 60
"""Runs executed while the server terminates the runner's connections."""
CUTS = 12 if LONG else 3

HANG_GUARD_SECONDS = 600.0 if LONG else 180.0
"""Far above what any scenario needs: only something that never ends reaches it."""


def report(scenario: str, **figures: Any) -> None:
    """Print a scenario's figures (seen with -s) and append them to $CLOACA_CHAOS_REPORT."""
    line = json.dumps({"scenario": scenario, "long": LONG, "seed": SEED, **figures}, sort_keys=True)
    print(f"\nchaos figures: {line}")
    path = os.environ.get("CLOACA_CHAOS_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
