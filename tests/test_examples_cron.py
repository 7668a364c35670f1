"""examples/cron_scheduling.py runs as shipped: every schedule fires, with its context, and
the history and statistics at the end agree with what ran. It runs for 7 s, started with the
other examples the session's tests read (example_support.py)."""

from __future__ import annotations

import re

EXAMPLE_SCRIPTS = ("cron_scheduling",)  # started by the session fixture example_runs
RUN_LINE = re.compile(r"^  \[(\d\d:\d\d:\d\d)\] (health_check|sales_report|data_sync) +(.*)$")
HISTORY_LINE = re.compile(r"^  (health_check|sales_report|data_sync) +(\d+) runs \(enabled=False, .*\): (.*)$")


def test_cron_example_prints_runs_of_each_schedule_then_history_and_stats(example_runs):
    done = example_runs.finished("cron_scheduling")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Cron Scheduling Demo"
    assert lines[-1] == "Demo complete!"

    runs: dict[str, list[tuple[str, str]]] = {"health_check": [], "sales_report": [], "data_sync": []}
    for line in lines:
        match = RUN_LINE.match(line)
        if match:
            runs[match.group(2)].append((match.group(1), match.group(3)))
    # In 7 s: 3+ slots every 2 s, 2+ every 3 s, 3+ on odd seconds; allow for a slow machine.
    assert len(runs["health_check"]) >= 2, done.stdout
    assert len(runs["sales_report"]) >= 1, done.stdout
    assert len(runs["data_sync"]) >= 2, done.stdout
    assert all(text == "3/3 services up" for _, text in runs["health_check"])
    assert all(text == "500 records from warehouse-eu" for _, text in runs["data_sync"])  # params
    assert all(int(slot[-2:]) % 2 == 0 for slot, _ in runs["health_check"])
    assert all(int(slot[-2:]) % 3 == 0 for slot, _ in runs["sales_report"])
    assert all(int(slot[-2:]) % 2 == 1 for slot, _ in runs["data_sync"])

    history = {}
    for line in lines:
        match = HISTORY_LINE.match(line)
        if match:
            history[match.group(1)] = (int(match.group(2)), match.group(3).split(", "))
    assert set(history) == set(runs), done.stdout
    for name, (count, slots) in history.items():
        printed = sorted(slot for slot, _ in runs[name])
        assert count == len(slots) >= len(printed)
        assert set(printed) <= set(slots)

    total = int(re.search(r"total executions: +(\d+)", done.stdout).group(1))
    successful = int(re.search(r"successful executions: +(\d+)", done.stdout).group(1))
    assert total >= successful == sum(count for count, _ in history.values())
    assert re.search(r"success rate: +\d+\.\d%", done.stdout)
