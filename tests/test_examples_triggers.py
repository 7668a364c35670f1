"""The examples of tutorial 07 (Event Triggers) run as shipped and print what they should.

Each example runs in its own interpreter (`python examples/<name>.py` from the repository
root). The three are started together, with the other examples the session's tests read
(example_support.py), so the file takes as long as the slowest example (about 9 s), not the
sum.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# The "Expected output" block of the tutorial (seed/07-event-triggers.md, "Running the
# Example"), copied verbatim: `[TRIGGER]` names a file after the wall clock, so that line is
# matched by pattern.
EXPECTED_DEMO_OUTPUT = """\
Event Triggers and Task Callbacks Demo
==================================================

Manual execution with callbacks:
----------------------------------------
  Validating file: report_2024.csv
  [SUCCESS] Task 'validate_file' completed
  Processing file: report_2024.csv
  [SUCCESS] Task 'process_file' completed
----------------------------------------
Workflow status: Completed

Simulating trigger polls:
----------------------------------------
  Poll 1: SKIP - waiting...
  Poll 2: SKIP - waiting...
  Poll 3: SKIP - waiting...
  Poll 4: SKIP - waiting...
  [TRIGGER] Found new file: data_143052.csv
  Poll 5: FIRE - workflow will execute
  Poll 6: SKIP - waiting...
  Poll 7: SKIP - waiting...

Demo complete!
"""
TRIGGER_LINE = re.compile(r"  \[TRIGGER\] Found new file: data_\d{6}\.csv")

EXAMPLES = ("event_triggers_demo", "file_watcher", "queue_depth_monitor")
EXAMPLE_SCRIPTS = EXAMPLES  # started together by the session fixture example_runs


@pytest.fixture(scope="module")
def outputs(example_runs) -> dict[str, subprocess.CompletedProcess[str]]:
    """The finished processes of the examples, by name."""
    return {name: example_runs.finished(name) for name in EXAMPLES}


def ran_cleanly(outputs: dict[str, subprocess.CompletedProcess[str]], name: str) -> list[str]:
    result = outputs[name]
    assert result.returncode == 0, f"{name} exited {result.returncode}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout.splitlines()


def test_complete_demo_prints_the_tutorials_expected_output(outputs):
    lines = ran_cleanly(outputs, "event_triggers_demo")
    expected = EXPECTED_DEMO_OUTPUT.splitlines()
    assert len(lines) == len(expected), "\n".join(lines)
    for number, (got, want) in enumerate(zip(lines, expected), start=1):
        if want.startswith("  [TRIGGER]"):
            assert TRIGGER_LINE.fullmatch(got), f"line {number}: {got!r}"
        else:
            assert got == want, f"line {number}: {got!r} != {want!r}"


def test_complete_demo_is_the_tutorials_code():
    """The example is the tutorial's listing, not a rewrite of it (spot checks)."""
    source = (REPO / "examples" / "event_triggers_demo.py").read_text()
    for fragment in (
        'runner = cloaca.DefaultRunner(":memory:")',
        'result = runner.execute("file_processor", context)',
        'poll_interval="2s",',
        "for i in range(7):",
        "result = file_watcher()",
        "if file_counter % 5 == 0:",
    ):
        assert fragment in source


def test_file_watcher_fires_once_per_file_and_processes_each(outputs):
    lines = ran_cleanly(outputs, "file_watcher")
    names = ["orders_001.csv", "orders_002.csv", "orders_003.csv"]
    processed = [line for line in lines if line.startswith("Processing file: ")]
    assert processed == [f"Processing file: {n}" for n in names], "\n".join(lines)

    fired = [line.strip() for line in lines if line.strip().startswith("fired ")]
    assert len(fired) == 3, "\n".join(lines)
    pattern = re.compile(
        r"fired (?P<name>\S+) \(context [0-9a-f]{16}\): Completed, (?P<rows>\d+) lines, "
        r"trigger_name=file_watcher"
    )
    seen = {}
    for line in fired:
        match = pattern.fullmatch(line)
        assert match, line
        seen[match["name"]] = int(match["rows"])
    assert seen == {"orders_001.csv": 3, "orders_002.csv": 5, "orders_003.csv": 2}
    assert lines[-1] == "File watcher demo complete!"


def test_queue_monitor_runs_identical_fires_concurrently(outputs):
    lines = ran_cleanly(outputs, "queue_depth_monitor")
    draining = [line for line in lines if line.startswith("Draining ")]
    # The scripted depths 150, 150, 150 (identical contexts) and 240 all fire: with
    # allow_concurrent=True nothing is dropped as a duplicate of a run in flight.
    assert sorted(draining) == sorted(
        ["Draining 150 messages from queue"] * 3 + ["Draining 240 messages from queue"]
    ), "\n".join(lines)
    assert "Trigger fired 4 times (oldest first):" in lines
    fires = [line.strip() for line in lines if line.strip().startswith("context ")]
    hashes = [line.split()[1].rstrip(":") for line in fires]
    assert len(fires) == 4 and len(set(hashes[:3])) == 1 and hashes[3] != hashes[0], "\n".join(lines)
    assert all(line.endswith("Completed") for line in fires)
    peak = next(line for line in lines if line.startswith("Most drain_queue runs in flight at once: "))
    assert int(peak.rsplit(" ", 1)[1]) >= 2, "\n".join(lines)
    assert lines[-1] == "Queue depth monitor demo complete!"
