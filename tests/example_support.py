"""Example scripts run as shipped (`python examples/<name>.py` from the repository root), for
the tests that check what they print.

The examples spend most of their time waiting (for trigger polls, cron slots), so every
example that the session's selected tests need is started at once, by the session fixture
`example_runs` (conftest.py), as soon as the first of those tests runs: the examples take
about as long as the slowest of them, not the sum. A test module names the examples its
tests read in `EXAMPLE_SCRIPTS`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterable

from support import finished_process

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_SECONDS = 60


class ExampleRuns:
    """Example processes started together; `finished(name)` waits for one of them."""

    def __init__(self, directory: Path, names: Iterable[str]) -> None:
        self.directory = directory  # where their output goes
        self.started: dict[str, subprocess.Popen[str]] = {}
        self.finished_runs: dict[str, subprocess.CompletedProcess[str]] = {}
        for name in names:
            self.start(name)

    def start(self, name: str) -> None:
        with (self.directory / f"{name}.stdout").open("w") as stdout, \
                (self.directory / f"{name}.stderr").open("w") as stderr:
            self.started[name] = subprocess.Popen(
                [sys.executable, str(REPO / "examples" / f"{name}.py")], cwd=REPO, stdout=stdout, stderr=stderr,
            )

    def finished(self, name: str, timeout: float = TIMEOUT_SECONDS) -> subprocess.CompletedProcess[str]:
        """The example's finished process (its exit code, stdout and stderr)."""
        if name not in self.started:
            self.start(name)
        if name not in self.finished_runs:
            self.finished_runs[name] = finished_process(self.started[name], self.directory / name, timeout)
        return self.finished_runs[name]

    def stop(self) -> None:
        for process in self.started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
